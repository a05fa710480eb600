package rewardmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// Files of a saved PRMU directory. A PRMU with a text encoder has
// PRMUEncoderDir (the encoder, tuned weights merged) and PRMUEmbeddingsFile
// (its cached text embeddings) instead of a tokenizer.
const (
	PRMUModelFile      = "model.onnx"
	PRMUTokenizerFile  = "tokenizer.json"
	PRMUConfigFile     = "prmu.json"
	PRMUEncoderDir     = "encoder"
	PRMUEmbeddingsFile = "embeddings.arrow"
	prmuFormat         = "tagpr-prmu/1"
)

// prmuScoreBatch bounds the rows of one scoring run; encoderRunTexts the
// texts of one encoder run in training (a step's responses and any new
// profile items go in one run up to it). Scoring encodes each new text in
// a run of its own (scoreRunTexts): a text's embedding then depends on the
// text alone, not on what else was encoded with it (a batch's padding moves
// it by ~1e-6), so an RL stage resumed after an interruption, which encodes
// again the texts its cache lost, gets the same rewards and ends with the
// same weights bit for bit.
const (
	prmuScoreBatch  = 128
	encoderRunTexts = 256
	scoreRunTexts   = 1
)

// PRMU is a loaded reward model: its graph in an ORT session and its text
// encoder, either a bag of tokens over its own tokenizer or a TextEncoder
// with its embedding cache. Score has the method set of
// pipeline.PRMUScorer.
type PRMU struct {
	Config PRMUConfig
	// Info describes how the model was trained (saved in prmu.json).
	Info  PRMUTrainInfo
	tok   *tokenize.Tokenizer // bag of tokens
	enc   *TextEncoder        // or a text encoder
	cache *EmbeddingCache     // with its embeddings
	model *onnxpb.ModelProto
	sess  *ort.Session
	sha   string // LoadPRMU's: see SHA256
}

// PRMUTrainInfo is what prmu.json records about training.
type PRMUTrainInfo struct {
	Steps        int     `json:"steps,omitempty"`
	LoRASteps    int     `json:"lora_steps,omitempty"` // joint encoder LoRA and head steps after Steps
	Pairs        int     `json:"pairs,omitempty"`
	Seed         uint64  `json:"seed,omitempty"`
	FinalLoss    float64 `json:"final_loss,omitempty"`
	DevAccuracy  float64 `json:"dev_pair_accuracy,omitempty"`
	DevPairs     int     `json:"dev_pairs,omitempty"`
	TrainSeconds float64 `json:"train_seconds,omitempty"`
}

type prmuFile struct {
	Format string        `json:"format"`
	Config PRMUConfig    `json:"config"`
	Train  PRMUTrainInfo `json:"train"`
}

// NewPRMU opens a session on a bag-of-tokens PRMU graph (as BuildPRMU makes
// it) with its tokenizer.
func NewPRMU(cfg PRMUConfig, tok *tokenize.Tokenizer, m *onnxpb.ModelProto, opts ort.Options) (*PRMU, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Encoder != nil {
		return nil, fmt.Errorf("prmu: the config names a text encoder: open it with NewEncoderPRMU")
	}
	if tok == nil {
		return nil, fmt.Errorf("prmu: no tokenizer")
	}
	if tok.VocabSize() > cfg.Vocab {
		return nil, fmt.Errorf("prmu: the tokenizer has %d tokens, the model embeds only %d", tok.VocabSize(), cfg.Vocab)
	}
	p := &PRMU{Config: cfg, tok: tok, model: m}
	return p, p.open(opts)
}

// NewEncoderPRMU opens a session on a PRMU head graph (BuildPRMU with
// cfg.Encoder) reading enc's embeddings through cache (nil: a new one in
// memory). The PRMU owns enc from then on, also when it fails.
func NewEncoderPRMU(cfg PRMUConfig, enc *TextEncoder, cache *EmbeddingCache, m *onnxpb.ModelProto, opts ort.Options) (*PRMU, error) {
	if enc == nil {
		return nil, fmt.Errorf("prmu: no text encoder")
	}
	cfg = cfg.Defaults()
	if cfg.Encoder == nil {
		enc.Close()
		return nil, fmt.Errorf("prmu: the config names no text encoder")
	}
	e := *cfg.Encoder
	e.Pooling, e.MaxTokens, e.Dim, e.SHA256 = enc.Pooling, enc.MaxTokens, enc.Dim, enc.SHA256
	cfg.Encoder = &e
	if err := cfg.Validate(); err != nil {
		enc.Close()
		return nil, err
	}
	if cache == nil {
		cache = NewEmbeddingCache(enc, "")
	}
	if cache.Encoder != enc.SHA256 {
		enc.Close()
		return nil, fmt.Errorf("prmu: the embedding cache belongs to another encoder")
	}
	p := &PRMU{Config: cfg, enc: enc, cache: cache, model: m}
	if err := p.open(opts); err != nil {
		enc.Close()
		return nil, err
	}
	return p, nil
}

// open checks the graph and starts its session.
func (p *PRMU) open(opts ort.Options) error {
	if err := checkPRMUGraph(p.model, p.Config); err != nil {
		return err
	}
	b, err := ir.Marshal(p.model)
	if err != nil {
		return fmt.Errorf("prmu: %w", err)
	}
	if p.sess, err = ort.NewSession(b, "prmu", opts); err != nil {
		return fmt.Errorf("prmu: %w", err)
	}
	return nil
}

// checkPRMUGraph refuses a graph without PRMU's inputs, output or a text
// encoder layer matching the config.
func checkPRMUGraph(m *onnxpb.ModelProto, cfg PRMUConfig) error {
	g := m.GetGraph()
	if g == nil {
		return fmt.Errorf("prmu model: no graph")
	}
	have := map[string]bool{}
	for _, vi := range g.Input {
		have[vi.GetName()] = true
	}
	inputs := []string{PRMUProfileBOW, PRMUResponseBOW}
	table, dims := prmuWeightPrefix+"embed", []int64{int64(cfg.Vocab), int64(cfg.Embed)}
	if cfg.Encoder != nil {
		inputs = []string{PRMUProfileEmb, PRMUProfileMask, PRMUResponseEmb}
		table, dims = prmuWeightPrefix+"enc.weight", []int64{int64(cfg.Encoder.Dim), int64(cfg.Hidden)}
	}
	for _, name := range inputs {
		if !have[name] {
			return fmt.Errorf("prmu model: no input %q (the config says %s)", name, cfg.describeEncoder())
		}
	}
	out := false
	for _, vi := range g.Output {
		out = out || vi.GetName() == PRMUScoreOutput
	}
	if !out {
		return fmt.Errorf("prmu model: no output %q", PRMUScoreOutput)
	}
	for _, t := range g.Initializer {
		if t.GetName() == table {
			if d := t.GetDims(); !slices.Equal(d, dims) {
				return fmt.Errorf("prmu model: %s is %v, the config says %v", table, d, dims)
			}
			return nil
		}
	}
	return fmt.Errorf("prmu model: no weight %q", table)
}

// Close releases the sessions.
func (p *PRMU) Close() {
	if p.sess != nil {
		p.sess.Destroy()
		p.sess = nil
	}
	if p.enc != nil {
		p.enc.Close()
	}
}

// SHA256 identifies a PRMU loaded by LoadPRMU by what its scores depend on:
// the graph with its weights, the config (which pins a text encoder by its
// hash) and, for a bag of tokens, the tokenizer file ("" for a PRMU not
// loaded from a directory). How it was trained (prmu.json's train) does not
// count.
func (p *PRMU) SHA256() string { return p.sha }

// Encoder is the PRMU's text encoder (nil for a bag of tokens).
func (p *PRMU) Encoder() *TextEncoder { return p.enc }

// Cache holds the encoder's text embeddings (nil for a bag of tokens).
func (p *PRMU) Cache() *EmbeddingCache { return p.cache }

// FlushCache writes new cached embeddings to the cache file, if it has one
// (LoadPRMU's: DIR/embeddings.arrow), so the next process does not encode
// them again.
func (p *PRMU) FlushCache() error {
	if p.cache == nil {
		return nil
	}
	return p.cache.Save()
}

// Tokenizer is the PRMU's own tokenizer.
func (p *PRMU) Tokenizer() *tokenize.Tokenizer { return p.tok }

// Model is the PRMU graph with its current weights.
func (p *PRMU) Model() *onnxpb.ModelProto { return p.model }

// prmuText is how every text is tokenized: trimmed, with one leading space,
// so a word encodes the same at the start of a response as inside a profile
// item (byte-level BPE tells " crime" from "crime"). A blank text has no
// tokens: a blank profile item is not counted.
func prmuText(s string) string {
	if s = strings.TrimSpace(s); s == "" {
		return ""
	}
	return " " + s
}

// prmuEncoder tokenizes texts for one call, once per distinct text (the G
// completions of a prompt share its profile).
type prmuEncoder struct {
	tok  *tokenize.Tokenizer
	seen map[string][]int64
}

func (e *prmuEncoder) encode(s string, maxTokens int) []int64 {
	ids, ok := e.seen[s]
	if !ok {
		ids = e.tok.Encode(prmuText(s))
		e.seen[s] = ids
	}
	return ids[:min(len(ids), maxTokens)]
}

// prmuBatch holds the bag-of-tokens inputs of B rows of K items.
type prmuBatch struct {
	B, K, V    int
	prof, resp []float32
}

func newPRMUBatch(B, K, V int) *prmuBatch {
	return &prmuBatch{B: B, K: K, V: V, prof: make([]float32, B*K*V), resp: make([]float32, B*V)}
}

// fill writes the rows' bags in place (tensors made by values see the
// change). Profiles past K items are cut; texts come already cut.
func (b *prmuBatch) fill(profiles [][][]int64, responses [][]int64) error {
	clear(b.prof)
	clear(b.resp)
	for i := range responses {
		for k, item := range profiles[i][:min(len(profiles[i]), b.K)] {
			if err := b.bag(b.prof[(i*b.K+k)*b.V:][:b.V], item); err != nil {
				return err
			}
		}
		if err := b.bag(b.resp[i*b.V:][:b.V], responses[i]); err != nil {
			return err
		}
	}
	return nil
}

// bag adds each token's share of ids to row.
func (b *prmuBatch) bag(row []float32, ids []int64) error {
	w := 1 / float32(len(ids))
	for _, id := range ids {
		if id < 0 || id >= int64(b.V) {
			return fmt.Errorf("token id %d outside the model's vocab [0, %d)", id, b.V)
		}
		row[id] += w
	}
	return nil
}

// values wraps the batch's slices as tensors (no copies).
func (b *prmuBatch) values() (map[string]ort.Value, func(), error) {
	in := inputSet{}
	err := addInput(in, PRMUProfileBOW, []int64{int64(b.B), int64(b.K), int64(b.V)}, b.prof)
	if err == nil {
		err = addInput(in, PRMUResponseBOW, []int64{int64(b.B), int64(b.V)}, b.resp)
	}
	return in.done(err)
}

// Score returns the raw score (a logit; R_PRMU = sigmoid of it) of each
// response for the user whose profile item texts are profiles[i]. Every
// response needs a profile with at least one item; only the first
// Config.MaxItems items are read, so pass the most relevant first.
func (p *PRMU) Score(ctx context.Context, profiles [][]string, responses []string) ([]float64, error) {
	if p.sess == nil {
		return nil, fmt.Errorf("prmu score: the model is closed")
	}
	if len(profiles) != len(responses) {
		return nil, fmt.Errorf("prmu score: %d profiles for %d responses", len(profiles), len(responses))
	}
	for i, pr := range profiles {
		if len(pr) == 0 {
			return nil, fmt.Errorf("prmu score: response %d has an empty profile", i)
		}
	}
	if p.enc != nil {
		out, err := p.scoreEmbedded(ctx, profiles, responses)
		if err != nil {
			return nil, fmt.Errorf("prmu score: %w", err)
		}
		return out, nil
	}
	enc := &prmuEncoder{tok: p.tok, seen: map[string][]int64{}}
	out := make([]float64, 0, len(responses))
	for start := 0; start < len(responses); start += prmuScoreBatch {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("prmu score: %w", err)
		}
		end := min(start+prmuScoreBatch, len(responses))
		scores, err := p.scoreChunk(enc, profiles[start:end], responses[start:end])
		if err != nil {
			return nil, fmt.Errorf("prmu score: %w", err)
		}
		out = append(out, scores...)
	}
	return out, nil
}

// scoreChunk scores up to prmuScoreBatch rows, padded to the most items of any.
func (p *PRMU) scoreChunk(enc *prmuEncoder, profiles [][]string, responses []string) ([]float64, error) {
	c := p.Config
	K := 1
	profIDs := make([][][]int64, len(responses))
	respIDs := make([][]int64, len(responses))
	for i := range responses {
		items := profiles[i][:min(len(profiles[i]), c.MaxItems)]
		K = max(K, len(items))
		for _, it := range items {
			profIDs[i] = append(profIDs[i], enc.encode(it, c.MaxItemTokens))
		}
		respIDs[i] = enc.encode(responses[i], c.MaxResponseTokens)
	}
	b := newPRMUBatch(len(responses), K, c.Vocab)
	if err := b.fill(profIDs, respIDs); err != nil {
		return nil, err
	}
	in, release, err := b.values()
	if err != nil {
		return nil, err
	}
	defer release()
	return p.runHead(in, len(responses))
}

// runHead runs the graph on prepared inputs and checks its n scores.
func (p *PRMU) runHead(in map[string]ort.Value, n int) ([]float64, error) {
	res, err := p.sess.Run(in, nil)
	if err != nil {
		return nil, err
	}
	defer res.Destroy()
	s, err := ort.Data[float32](PRMUScoreOutput, res.Get(PRMUScoreOutput))
	if err != nil {
		return nil, err
	}
	if len(s) != n {
		return nil, fmt.Errorf("the model gave %d scores for %d responses", len(s), n)
	}
	out := make([]float64, len(s))
	for i, v := range s {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return nil, fmt.Errorf("score of response %d is %v", i, v)
		}
		out[i] = float64(v)
	}
	return out, nil
}

// embedRows looks up (or encodes, in runs of up to batch texts) the
// embedding of every text the rows read: each profile's first maxItems
// items (a blank item is nil: no item) and each response, texts trimmed.
// The responses go last, so new ones share one encoder run (up to batch of
// them), with new items when they fit.
func embedRows(ctx context.Context, enc *TextEncoder, cache *EmbeddingCache, maxItems int, profiles [][]string, responses []string, batch int) (items [][][]float32, resp [][]float32, err error) {
	var texts []string
	for i := range responses {
		for _, it := range profiles[i][:min(len(profiles[i]), maxItems)] {
			if it = strings.TrimSpace(it); it != "" {
				texts = append(texts, it)
			}
		}
	}
	nItems := len(texts)
	for _, r := range responses {
		texts = append(texts, strings.TrimSpace(r))
	}
	vecs, err := cache.Embed(ctx, enc, texts, batch)
	if err != nil {
		return nil, nil, err
	}
	items, resp = make([][][]float32, len(responses)), vecs[nItems:]
	k := 0
	for i := range responses {
		for _, it := range profiles[i][:min(len(profiles[i]), maxItems)] {
			var v []float32
			if strings.TrimSpace(it) != "" {
				v, k = vecs[k], k+1
			}
			items[i] = append(items[i], v)
		}
	}
	return items, resp, nil
}

// scoreEmbedded scores through the text encoder: embeddings first (cached
// or encoded), then the head in runs of up to prmuScoreBatch rows.
func (p *PRMU) scoreEmbedded(ctx context.Context, profiles [][]string, responses []string) ([]float64, error) {
	items, resp, err := embedRows(ctx, p.enc, p.cache, p.Config.MaxItems, profiles, responses, scoreRunTexts)
	if err != nil {
		return nil, err
	}
	out := make([]float64, 0, len(responses))
	for start := 0; start < len(responses); start += prmuScoreBatch {
		end := min(start+prmuScoreBatch, len(responses))
		K := 1
		for _, it := range items[start:end] {
			K = max(K, len(it))
		}
		b := newPRMUEmbBatch(end-start, K, p.Config.Encoder.Dim)
		b.fill(items[start:end], resp[start:end])
		in, release, err := b.values()
		if err != nil {
			return nil, err
		}
		scores, err := p.runHead(in, end-start)
		release()
		if err != nil {
			return nil, err
		}
		out = append(out, scores...)
	}
	return out, nil
}

// prmuEmbBatch holds the embedding inputs of B rows of K items of width D.
type prmuEmbBatch struct {
	B, K, D          int
	prof, mask, resp []float32
}

func newPRMUEmbBatch(B, K, D int) *prmuEmbBatch {
	return &prmuEmbBatch{B: B, K: K, D: D, prof: make([]float32, B*K*D), mask: make([]float32, B*K), resp: make([]float32, B*D)}
}

// fill writes the rows in place; a nil item is padding (mask 0), items past
// K are cut.
func (b *prmuEmbBatch) fill(items [][][]float32, resp [][]float32) {
	clear(b.prof)
	clear(b.mask)
	for i := range resp {
		for k, v := range items[i][:min(len(items[i]), b.K)] {
			if v != nil {
				copy(b.prof[(i*b.K+k)*b.D:][:b.D], v)
				b.mask[i*b.K+k] = 1
			}
		}
		copy(b.resp[i*b.D:][:b.D], resp[i])
	}
}

// values wraps the batch's slices as tensors (no copies).
func (b *prmuEmbBatch) values() (map[string]ort.Value, func(), error) {
	in := inputSet{}
	err := addInput(in, PRMUProfileEmb, []int64{int64(b.B), int64(b.K), int64(b.D)}, b.prof)
	if err == nil {
		err = addInput(in, PRMUProfileMask, []int64{int64(b.B), int64(b.K)}, b.mask)
	}
	if err == nil {
		err = addInput(in, PRMUResponseEmb, []int64{int64(b.B), int64(b.D)}, b.resp)
	}
	return in.done(err)
}

// inputSet collects named graph inputs over Go slices.
type inputSet map[string]ort.Value

// addInput wraps data as a tensor (no copy) under name.
func addInput[T int64 | float32](in inputSet, name string, shape []int64, data []T) error {
	v, err := ort.NewTensor(shape, data)
	if err != nil {
		return fmt.Errorf("prmu input %s: %w", name, err)
	}
	in[name] = v
	return nil
}

func (in inputSet) release() {
	for _, v := range in {
		v.Destroy()
	}
}

// done returns the inputs and their release, or releases them on err.
func (in inputSet) done(err error) (map[string]ort.Value, func(), error) {
	if err != nil {
		in.release()
		return nil, nil, err
	}
	return in, in.release, nil
}

// Save writes dir/model.onnx and dir/prmu.json with, for a bag of tokens,
// dir/tokenizer.json, or, for a text encoder, dir/encoder/ (the encoder as
// LoadTextEncoder reads it) and dir/embeddings.arrow (the cache, which
// becomes the PRMU's cache file). Each file is written atomically; prmu.json
// goes last, so a directory with it is complete.
func (p *PRMU) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save prmu %s: %w", dir, err)
	}
	if err := ir.Write(p.model, filepath.Join(dir, PRMUModelFile), ir.WriteOptions{}); err != nil {
		return fmt.Errorf("save prmu: %w", err)
	}
	cfg := p.Config
	if p.enc != nil {
		if err := p.enc.Save(filepath.Join(dir, PRMUEncoderDir)); err != nil {
			return fmt.Errorf("save prmu: %w", err)
		}
		if err := p.cache.SaveAs(filepath.Join(dir, PRMUEmbeddingsFile)); err != nil {
			return fmt.Errorf("save prmu: %w", err)
		}
		e := *cfg.Encoder
		e.Dir = PRMUEncoderDir
		cfg.Encoder = &e
	} else if err := p.tok.Save(filepath.Join(dir, PRMUTokenizerFile)); err != nil {
		return fmt.Errorf("save prmu: %w", err)
	}
	b, err := json.MarshalIndent(prmuFile{Format: prmuFormat, Config: cfg, Train: p.Info}, "", "  ")
	if err != nil {
		return fmt.Errorf("save prmu %s: %w", dir, err)
	}
	path := filepath.Join(dir, PRMUConfigFile)
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save prmu %s: %w", path, err)
	}
	return nil
}

// LoadPRMU opens a directory written by Save. A PRMU with a text encoder
// refuses an encoder other than the one its head was trained with, and reads
// its cached embeddings from dir/embeddings.arrow (a cache of another
// encoder is dropped: Cache().Invalidated).
func LoadPRMU(dir string, opts ort.Options) (*PRMU, error) {
	path := filepath.Join(dir, PRMUConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load prmu: %w", err)
	}
	var f prmuFile
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", path, err)
	}
	if f.Format != prmuFormat {
		return nil, fmt.Errorf("load prmu %s: format %q, want %q", path, f.Format, prmuFormat)
	}
	if err := f.Config.Defaults().Validate(); err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", path, err)
	}
	modelPath := filepath.Join(dir, PRMUModelFile)
	m, err := ir.Load(modelPath)
	if err != nil {
		return nil, fmt.Errorf("load prmu: %w", err)
	}
	graph, err := ir.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", modelPath, err)
	}
	cfgJSON, err := json.Marshal(f.Config)
	if err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", path, err)
	}
	var tokJSON []byte
	var p *PRMU
	if f.Config.Encoder != nil {
		p, err = loadEncoderPRMU(dir, path, f.Config, m, opts)
	} else {
		tokPath := filepath.Join(dir, PRMUTokenizerFile)
		if tokJSON, err = os.ReadFile(tokPath); err != nil {
			return nil, fmt.Errorf("load prmu: %w", err)
		}
		var tok *tokenize.Tokenizer
		if tok, err = tokenize.Load(tokPath); err != nil {
			return nil, fmt.Errorf("load prmu: %w", err)
		}
		p, err = NewPRMU(f.Config, tok, m, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", dir, err)
	}
	p.Info = f.Train
	h := sha256.New()
	for _, part := range [][]byte{[]byte(prmuFormat), graph, cfgJSON, tokJSON} {
		sum := sha256.Sum256(part)
		h.Write(sum[:])
	}
	p.sha = hex.EncodeToString(h.Sum(nil))
	return p, nil
}

// loadEncoderPRMU opens the encoder the config names (relative to dir),
// checks it is the one the head was trained with, and opens its cache.
func loadEncoderPRMU(dir, configPath string, cfg PRMUConfig, m *onnxpb.ModelProto, opts ort.Options) (*PRMU, error) {
	ec := cfg.Encoder
	if ec.SHA256 == "" || ec.Dim <= 0 {
		return nil, fmt.Errorf("%s: encoder.sha256 or encoder.dim is missing (a trained PRMU records them: train it with tagpr prmu train)", configPath)
	}
	encDir := ec.Dir
	if !filepath.IsAbs(encDir) {
		encDir = filepath.Join(dir, encDir)
	}
	enc, err := LoadTextEncoder(encDir, EncoderOptions{Pooling: ec.Pooling, MaxTokens: ec.MaxTokens, Session: opts})
	if err != nil {
		return nil, err
	}
	if enc.SHA256 != ec.SHA256 {
		enc.Close()
		return nil, fmt.Errorf("the encoder in %s is %.12s…, the head was trained with %.12s… (%s encoder.sha256): restore that encoder or train the PRMU again", encDir, enc.SHA256, ec.SHA256, configPath)
	}
	cache, err := OpenEmbeddingCache(enc, filepath.Join(dir, PRMUEmbeddingsFile))
	if err != nil {
		enc.Close()
		return nil, err
	}
	return NewEncoderPRMU(cfg, enc, cache, m, opts)
}
