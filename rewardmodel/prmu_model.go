package rewardmodel

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// Files of a saved PRMU directory.
const (
	PRMUModelFile     = "model.onnx"
	PRMUTokenizerFile = "tokenizer.json"
	PRMUConfigFile    = "prmu.json"
	prmuFormat        = "tagpr-prmu/1"
)

// prmuScoreBatch bounds the rows of one scoring run.
const prmuScoreBatch = 128

// PRMU is a loaded reward model: its graph in an ORT session and its own
// tokenizer. Score has the method set of pipeline.PRMUScorer.
type PRMU struct {
	Config PRMUConfig
	// Info describes how the model was trained (saved in prmu.json).
	Info  PRMUTrainInfo
	tok   *tokenize.Tokenizer
	model *onnxpb.ModelProto
	sess  *ort.Session
}

// PRMUTrainInfo is what prmu.json records about training.
type PRMUTrainInfo struct {
	Steps        int     `json:"steps,omitempty"`
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

// NewPRMU opens a session on a PRMU graph (as BuildPRMU makes it) with its tokenizer.
func NewPRMU(cfg PRMUConfig, tok *tokenize.Tokenizer, m *onnxpb.ModelProto, opts ort.Options) (*PRMU, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if tok == nil {
		return nil, fmt.Errorf("prmu: no tokenizer")
	}
	if tok.VocabSize() > cfg.Vocab {
		return nil, fmt.Errorf("prmu: the tokenizer has %d tokens, the model embeds only %d", tok.VocabSize(), cfg.Vocab)
	}
	if err := checkPRMUGraph(m, cfg); err != nil {
		return nil, err
	}
	b, err := ir.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("prmu: %w", err)
	}
	sess, err := ort.NewSession(b, "prmu", opts)
	if err != nil {
		return nil, fmt.Errorf("prmu: %w", err)
	}
	return &PRMU{Config: cfg, tok: tok, model: m, sess: sess}, nil
}

// checkPRMUGraph refuses a graph without PRMU's inputs, output or an
// embedding table matching the config.
func checkPRMUGraph(m *onnxpb.ModelProto, cfg PRMUConfig) error {
	g := m.GetGraph()
	if g == nil {
		return fmt.Errorf("prmu model: no graph")
	}
	have := map[string]bool{}
	for _, vi := range g.Input {
		have[vi.GetName()] = true
	}
	for _, name := range []string{PRMUProfileBOW, PRMUResponseBOW} {
		if !have[name] {
			return fmt.Errorf("prmu model: no input %q", name)
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
		if t.GetName() == prmuWeightPrefix+"embed" {
			if d := t.GetDims(); len(d) != 2 || d[0] != int64(cfg.Vocab) || d[1] != int64(cfg.Embed) {
				return fmt.Errorf("prmu model: embedding table is %v, the config says [%d %d]", d, cfg.Vocab, cfg.Embed)
			}
			return nil
		}
	}
	return fmt.Errorf("prmu model: no embedding table %q", prmuWeightPrefix+"embed")
}

// Close releases the session.
func (p *PRMU) Close() {
	if p.sess != nil {
		p.sess.Destroy()
		p.sess = nil
	}
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
	prof, err := ort.NewTensor([]int64{int64(b.B), int64(b.K), int64(b.V)}, b.prof)
	if err != nil {
		return nil, nil, fmt.Errorf("prmu inputs: %w", err)
	}
	resp, err := ort.NewTensor([]int64{int64(b.B), int64(b.V)}, b.resp)
	if err != nil {
		prof.Destroy()
		return nil, nil, fmt.Errorf("prmu inputs: %w", err)
	}
	release := func() {
		prof.Destroy()
		resp.Destroy()
	}
	return map[string]ort.Value{PRMUProfileBOW: prof, PRMUResponseBOW: resp}, release, nil
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
	res, err := p.sess.Run(in, nil)
	if err != nil {
		return nil, err
	}
	defer res.Destroy()
	s, err := ort.Data[float32](PRMUScoreOutput, res.Get(PRMUScoreOutput))
	if err != nil {
		return nil, err
	}
	if len(s) != len(responses) {
		return nil, fmt.Errorf("the model gave %d scores for %d responses", len(s), len(responses))
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

// Save writes dir/model.onnx, dir/tokenizer.json and dir/prmu.json, each
// atomically; prmu.json goes last, so a directory with it is complete.
func (p *PRMU) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save prmu %s: %w", dir, err)
	}
	if err := ir.Write(p.model, filepath.Join(dir, PRMUModelFile), ir.WriteOptions{}); err != nil {
		return fmt.Errorf("save prmu: %w", err)
	}
	if err := p.tok.Save(filepath.Join(dir, PRMUTokenizerFile)); err != nil {
		return fmt.Errorf("save prmu: %w", err)
	}
	b, err := json.MarshalIndent(prmuFile{Format: prmuFormat, Config: p.Config, Train: p.Info}, "", "  ")
	if err != nil {
		return fmt.Errorf("save prmu %s: %w", dir, err)
	}
	path := filepath.Join(dir, PRMUConfigFile)
	if err := renameio.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save prmu %s: %w", path, err)
	}
	return nil
}

// LoadPRMU opens a directory written by Save.
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
	if err := f.Config.Validate(); err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", path, err)
	}
	tok, err := tokenize.Load(filepath.Join(dir, PRMUTokenizerFile))
	if err != nil {
		return nil, fmt.Errorf("load prmu: %w", err)
	}
	modelPath := filepath.Join(dir, PRMUModelFile)
	m, err := ir.Load(modelPath)
	if err != nil {
		return nil, fmt.Errorf("load prmu: %w", err)
	}
	p, err := NewPRMU(f.Config, tok, m, opts)
	if err != nil {
		return nil, fmt.Errorf("load prmu %s: %w", dir, err)
	}
	p.Info = f.Train
	return p, nil
}
