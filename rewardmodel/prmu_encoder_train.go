package rewardmodel

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Inputs of the LoRA training graph besides the encoder's: each row's item
// slots and response index rows of the step's distinct texts, which the
// encoder reads in one run.
const (
	loraProfileIndex  = "profile_text_index"  // [B,K] int64
	loraResponseIndex = "response_text_index" // [B] int64
)

// TrainEncoderPRMU trains a PRMU whose text encoder is enc, on the same
// Bradley–Terry pairs and with the same steps as TrainPRMU. The PRMU takes
// enc over (it is closed when training fails).
//
// Every distinct text of the pairs is embedded once by the encoder as
// exported, through cache (nil: a new one in memory; it becomes the PRMU's),
// and the head trains o.Steps steps on the cached embeddings. That is all
// of a frozen encoder's training (cfg.Encoder.Tuning "frozen").
//
// LoRA then adds cfg.Encoder.LoRASteps steps in which the encoder, with
// adapters on its MatMul weights, and the head form one training graph
// (train.AddLoRA, Specialize, Differentiate, as for the policy): each step
// encodes its distinct texts in one run and trains the adapters and the
// head together. The returned PRMU reads a new encoder, the adapters merged
// into its weights (so its SHA256 differs from enc's), with a new cache.
func TrainEncoderPRMU(ctx context.Context, cfg PRMUConfig, enc *TextEncoder, cache *EmbeddingCache, pairs []PRMUPair, o PRMUTrainOptions) (*PRMU, PRMUTrainResult, error) {
	start := time.Now()
	var res PRMUTrainResult
	p, err := trainEncoderPRMU(ctx, cfg, enc, cache, pairs, o, &res)
	if err != nil {
		enc.Close()
		return nil, res, fmt.Errorf("train prmu: %w", err)
	}
	o, _ = o.check(pairs)
	res.finish(p, o, len(pairs), start)
	if p.Config.Encoder.Tuning == TuneLoRA {
		p.Info.LoRASteps = p.Config.Encoder.LoRASteps
	}
	return p, res, nil
}

func trainEncoderPRMU(ctx context.Context, cfg PRMUConfig, enc *TextEncoder, cache *EmbeddingCache, pairs []PRMUPair, o PRMUTrainOptions, res *PRMUTrainResult) (*PRMU, error) {
	o, err := o.check(pairs)
	if err != nil {
		return nil, err
	}
	if enc == nil || cfg.Encoder == nil {
		return nil, fmt.Errorf("no text encoder (the config's encoder and a loaded TextEncoder are both needed)")
	}
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	e := *cfg.Encoder
	if (e.Pooling != "" && e.Pooling != enc.Pooling) || (e.MaxTokens != 0 && e.MaxTokens != enc.MaxTokens) {
		return nil, fmt.Errorf("the config's encoder pools by %q over %d tokens, the loaded encoder by %q over %d: load it with the config's settings",
			e.Pooling, e.MaxTokens, enc.Pooling, enc.MaxTokens)
	}
	e.Pooling, e.MaxTokens, e.Dim = enc.Pooling, enc.MaxTokens, enc.Dim
	cfg.Encoder = &e
	head, err := BuildPRMU(cfg)
	if err != nil {
		return nil, err
	}
	// The head learns on cached embeddings of the encoder as exported: all
	// of a frozen PRMU's training, and a LoRA PRMU's warm start (cheap: no
	// encoder run per step).
	P := min(o.PairsPerStep, len(pairs))
	if cache == nil {
		cache = NewEmbeddingCache(enc, "")
	}
	feed, err := newFrozenFeed(ctx, enc, cache, cfg, pairs, P)
	if err != nil {
		return nil, err
	}
	weights, err := runPRMUTraining(ctx, head, feed, []string{prmuWeightPrefix + "*"}, len(pairs), o, res)
	feed.close()
	if err != nil {
		return nil, err
	}
	trained, err := train.ExportModel(head, weights, nil)
	if err != nil {
		return nil, err
	}
	if cfg.Encoder.Tuning == TuneFrozen || cfg.Encoder.LoRASteps == 0 {
		return NewEncoderPRMU(cfg, enc, cache, trained, o.Session)
	}

	// LoRA: adapters on the encoder and the warm head train together.
	m, adapters, err := loraPRMUModel(enc, cfg)
	if err != nil {
		return nil, err
	}
	if m, err = train.ExportModel(m, weights, nil); err != nil {
		return nil, err
	}
	lfeed, err := newLoRAFeed(enc, cfg, pairs, P)
	if err != nil {
		return nil, err
	}
	defer lfeed.close()
	if res.LoRAMemory, err = checkLoRAMemory(enc, lfeed, m, adapters, o); err != nil {
		return nil, err
	}
	lo := o
	lo.Steps, lo.Seed = cfg.Encoder.LoRASteps, o.Seed+1
	if o.Dir != "" { // the LoRA phase is a run of its own
		lo.Dir = filepath.Join(o.Dir, "lora")
	}
	if weights, err = runPRMUTraining(ctx, m, lfeed, append([]string{prmuWeightPrefix + "*"}, train.AdapterParams(adapters)...), len(pairs), lo, res); err != nil {
		return nil, err
	}
	headW, adapterW := map[string][]float32{}, map[string][]float32{}
	for name, w := range weights {
		if strings.HasPrefix(name, prmuWeightPrefix) {
			headW[name] = w
		} else {
			adapterW[name] = w
		}
	}
	if trained, err = train.ExportModel(head, headW, nil); err != nil {
		return nil, err
	}
	tunedExport, err := train.ExportModel(enc.export, adapterW, adapters)
	if err != nil {
		return nil, err
	}
	tuned, err := NewTextEncoder(tunedExport, enc.files, enc.Pooling, enc.MaxTokens, o.Session)
	if err != nil {
		return nil, err
	}
	enc.Close()
	return NewEncoderPRMU(cfg, tuned, nil, trained, o.Session)
}

// loraPRMUModel is the encoder (pooled, with LoRA adapters on its MatMul
// weights) feeding the PRMU head: the encoder reads the step's distinct
// texts, Gathers pick each row's items and response, and the head scores.
// Its PRMU weights are BuildPRMU(cfg)'s (same names, same seed).
func loraPRMUModel(enc *TextEncoder, cfg PRMUConfig) (*onnxpb.ModelProto, []train.Adapter, error) {
	m := ir.Clone(enc.pooled)
	adapters, err := train.AddLoRA(m, train.LoRA{Rank: cfg.Encoder.LoRARank, Alpha: cfg.Encoder.LoRAAlpha, Seed: cfg.Seed})
	if err != nil {
		return nil, nil, fmt.Errorf("encoder lora: %w", err)
	}
	g := ir.WrapGraph(m.Graph)
	m.Graph.Output = nil
	g.Input(loraProfileIndex, ir.Int64, "batch", "items")
	g.Input(PRMUProfileMask, ir.Float, "batch", "items")
	g.Input(loraResponseIndex, ir.Int64, "batch")
	items := g.Op("Gather", []string{EncoderOutput, loraProfileIndex}, ir.AttrInt("axis", 0)) // [B,K,D]
	resp := g.Op("Gather", []string{EncoderOutput, loraResponseIndex}, ir.AttrInt("axis", 0)) // [B,D]
	newPRMUBuilder(g, cfg).embeddingHead(items, PRMUProfileMask, resp)
	g.Output(PRMUScoreOutput, ir.Float, "batch")
	if err := g.Err(); err != nil {
		return nil, nil, fmt.Errorf("encoder lora: %w", err)
	}
	return m, adapters, nil
}

// frozenFeed feeds cached embeddings: every distinct text of the pairs is
// embedded once, before the first step.
type frozenFeed struct {
	items            [][][]float32 // per pair: its items' embeddings (nil: a blank item)
	chosen, rejected [][]float32
	batch            *prmuEmbBatch
	in               map[string]ort.Value
	release          func()
	stepItems        [][][]float32
	stepResp         [][]float32
}

func newFrozenFeed(ctx context.Context, enc *TextEncoder, cache *EmbeddingCache, cfg PRMUConfig, pairs []PRMUPair, P int) (*frozenFeed, error) {
	profiles, chosen, rejected := make([][]string, len(pairs)), make([]string, len(pairs)), make([]string, len(pairs))
	for i, p := range pairs {
		profiles[i], chosen[i], rejected[i] = p.Profile, p.Chosen, p.Rejected
	}
	f := &frozenFeed{}
	var err error
	if f.items, f.chosen, err = embedRows(ctx, enc, cache, cfg.MaxItems, profiles, chosen, encoderRunTexts); err != nil {
		return nil, err
	}
	if _, f.rejected, err = embedRows(ctx, enc, cache, 0, profiles, rejected, encoderRunTexts); err != nil {
		return nil, err
	}
	K := 1
	for _, it := range f.items {
		K = max(K, len(it))
	}
	f.batch = newPRMUEmbBatch(2*P, K, enc.Dim)
	if f.in, f.release, err = f.batch.values(); err != nil {
		return nil, err
	}
	f.stepItems, f.stepResp = make([][][]float32, 2*P), make([][]float32, 2*P)
	return f, nil
}

func (f *frozenFeed) shapes() map[string][]int64 {
	b := f.batch
	return map[string][]int64{PRMUProfileEmb: {int64(b.B), int64(b.K), int64(b.D)}, PRMUProfileMask: {int64(b.B), int64(b.K)},
		PRMUResponseEmb: {int64(b.B), int64(b.D)}}
}

func (f *frozenFeed) inputs() map[string]ort.Value { return f.in }

func (f *frozenFeed) fill(pairs []int) error {
	P := len(pairs)
	for j, i := range pairs {
		f.stepItems[j], f.stepItems[P+j] = f.items[i], f.items[i]
		f.stepResp[j], f.stepResp[P+j] = f.chosen[i], f.rejected[i]
	}
	f.batch.fill(f.stepItems, f.stepResp)
	return nil
}

func (f *frozenFeed) close() { f.release() }

// loraFeed feeds token ids: each step's distinct texts are rows of one
// encoder batch (N = P·K + 2P rows, the most a step can have; spare rows
// hold an empty text), and index inputs place them in the head's rows.
type loraFeed struct {
	enc              *TextEncoder
	items            [][][]int64 // per pair: its items' tokens (nil: a blank item)
	chosen, rejected [][]int64
	empty            []int64
	P, K             int
	texts            *encoderBatch
	pidx, ridx       []int64
	mask             []float32
	in               map[string]ort.Value
	release          func()
	slot             map[string]int
}

func newLoRAFeed(enc *TextEncoder, cfg PRMUConfig, pairs []PRMUPair, P int) (*loraFeed, error) {
	f := &loraFeed{enc: enc, P: P, K: 1, empty: enc.Tokens(""), slot: map[string]int{},
		items: make([][][]int64, len(pairs)), chosen: make([][]int64, len(pairs)), rejected: make([][]int64, len(pairs))}
	seen := map[string][]int64{}
	T := len(f.empty)
	tokens := func(s string) []int64 {
		ids, ok := seen[s]
		if !ok {
			ids = enc.Tokens(s)
			seen[s] = ids
			T = max(T, len(ids))
		}
		return ids
	}
	for i, p := range pairs {
		for _, it := range p.Profile[:min(len(p.Profile), cfg.MaxItems)] {
			var ids []int64
			if it = strings.TrimSpace(it); it != "" {
				ids = tokens(it)
			}
			f.items[i] = append(f.items[i], ids)
		}
		f.K = max(f.K, len(f.items[i]))
		f.chosen[i], f.rejected[i] = tokens(strings.TrimSpace(p.Chosen)), tokens(strings.TrimSpace(p.Rejected))
	}
	B := 2 * P
	f.texts = newEncoderBatch(P*f.K+B, T)
	f.pidx, f.ridx, f.mask = make([]int64, B*f.K), make([]int64, B), make([]float32, B*f.K)
	in := inputSet{}
	err := f.texts.addTo(in, enc.typeIDs)
	if err == nil {
		err = addInput(in, loraProfileIndex, []int64{int64(B), int64(f.K)}, f.pidx)
	}
	if err == nil {
		err = addInput(in, loraResponseIndex, []int64{int64(B)}, f.ridx)
	}
	if err == nil {
		err = addInput(in, PRMUProfileMask, []int64{int64(B), int64(f.K)}, f.mask)
	}
	if f.in, f.release, err = in.done(err); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *loraFeed) shapes() map[string][]int64 {
	B, K, NT := int64(2*f.P), int64(f.K), []int64{int64(f.texts.N), int64(f.texts.T)}
	s := map[string][]int64{encoderIDs: NT, encoderMask: NT, loraProfileIndex: {B, K}, PRMUProfileMask: {B, K}, loraResponseIndex: {B}}
	if f.enc.typeIDs {
		s[encoderTypeIDs] = NT
	}
	return s
}

func (f *loraFeed) inputs() map[string]ort.Value { return f.in }

// fill puts each distinct text of the step in one encoder row (keyed by its
// tokens: equal tokens embed equally) and points the head's rows at them.
func (f *loraFeed) fill(pairs []int) error {
	clear(f.slot)
	n := 0
	row := func(ids []int64) (int64, error) {
		key := fmt.Sprint(ids)
		if i, ok := f.slot[key]; ok {
			return int64(i), nil
		}
		if err := f.texts.set(n, ids, f.enc.pad); err != nil {
			return 0, err
		}
		f.slot[key] = n
		n++
		return int64(n - 1), nil
	}
	P, K := len(pairs), f.K
	clear(f.pidx)
	clear(f.mask)
	for j, i := range pairs {
		for k, ids := range f.items[i] {
			if ids == nil {
				continue
			}
			r, err := row(ids)
			if err != nil {
				return err
			}
			f.pidx[j*K+k], f.pidx[(P+j)*K+k] = r, r
			f.mask[j*K+k], f.mask[(P+j)*K+k] = 1, 1
		}
		var err error
		if f.ridx[j], err = row(f.chosen[i]); err != nil {
			return err
		}
		if f.ridx[P+j], err = row(f.rejected[i]); err != nil {
			return err
		}
	}
	for ; n < f.texts.N; n++ {
		if err := f.texts.set(n, f.empty, f.enc.pad); err != nil {
			return err
		}
	}
	return nil
}

func (f *loraFeed) close() { f.release() }
