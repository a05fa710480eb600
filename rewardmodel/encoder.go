package rewardmodel

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// TextEncoder is a sentence encoder exported from PyTorch the way
// `optimum-cli export onnx --task feature-extraction` writes it (a BERT-,
// MiniLM- or BGE-class model: inputs input_ids, attention_mask and optionally
// token_type_ids, output last_hidden_state [N,T,D]), with its tokenizer.json
// (WordPiece, BPE or sentencepiece Unigram) and a pooling: the mean of last_hidden_state over the
// attention mask, or the first ([CLS]) position. Pooling is appended to the
// exported graph, so one ORT run maps a batch of texts to their embeddings.
type TextEncoder struct {
	Pooling   string // EncoderPoolMean or EncoderPoolCLS
	MaxTokens int    // tokens read per text, special tokens included
	Dim       int    // embedding width (the model's hidden size)
	// SHA256 identifies what the embeddings depend on: the graph and its
	// weights, the tokenizer files, the pooling and MaxTokens. Cached
	// embeddings are valid only for the encoder with their hash.
	SHA256 string

	files   encoderFiles
	tok     *tokenize.Tokenizer
	export  *onnxpb.ModelProto // as exported (Save writes it; LoRA merges into it)
	pooled  *onnxpb.ModelProto // export + pooling: token ids → EncoderOutput
	sess    *ort.Session
	typeIDs bool // the graph reads token_type_ids (fed zeros: one segment)
	prefix  []int64
	suffix  []int64
	pad     int64
	stats   EncoderStats
}

// Text pooling modes (EncoderConfig.Pooling), as sentence-transformers'
// 1_Pooling/config.json names them: pooling_mode_mean_tokens,
// pooling_mode_cls_token.
const (
	EncoderPoolMean = "mean"
	EncoderPoolCLS  = "cls"
)

// Names in an exported encoder and in its pooled graph.
const (
	encoderIDs       = "input_ids"
	encoderMask      = "attention_mask"
	encoderTypeIDs   = "token_type_ids"
	encoderHidden    = "last_hidden_state"
	EncoderOutput    = "text_embedding" // [N,D] float32: the pooled embeddings
	encoderMinOpset  = 13               // ReduceSum with axes as an input
	encoderMaxTokens = 128              // default MaxTokens when the model allows it
)

// Files of an encoder directory, in Optimum's layout.
const (
	EncoderModelFile     = "model.onnx"
	encoderTokenizerFile = "tokenizer.json"
	encoderTokConfigFile = "tokenizer_config.json"
	encoderHFConfigFile  = "config.json"
	encoderPoolingFile   = "1_Pooling/config.json"
)

// encoderFiles are the raw bytes of the files besides the graph, kept to
// save the encoder verbatim and to hash it.
type encoderFiles struct {
	tokenizer, tokConfig, hfConfig []byte
}

// EncoderStats counts the encoder's ORT runs and the texts they encoded.
type EncoderStats struct {
	Runs    int
	Texts   int
	Seconds float64
}

// EncoderOptions say how LoadTextEncoder reads a directory.
type EncoderOptions struct {
	// Pooling overrides the directory's 1_Pooling/config.json ("" reads it).
	Pooling string
	// MaxTokens per text, special tokens included (0: 128, or less when the
	// model's max_position_embeddings or model_max_length is smaller).
	MaxTokens int
	Session   ort.Options
}

// LoadTextEncoder opens an encoder directory: model.onnx (weights inside
// or in external data beside it), tokenizer.json (tokenizer_config.json
// beside it is read when present), config.json (optional: it bounds
// MaxTokens) and, unless o.Pooling is set, 1_Pooling/config.json.
func LoadTextEncoder(dir string, o EncoderOptions) (*TextEncoder, error) {
	var f encoderFiles
	var err error
	if f.tokenizer, err = os.ReadFile(filepath.Join(dir, encoderTokenizerFile)); err != nil {
		return nil, fmt.Errorf("text encoder: %w (export the tokenizer with the model: optimum-cli copies it when the model directory has one)", err)
	}
	if f.tokConfig, err = readOptional(filepath.Join(dir, encoderTokConfigFile)); err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	if f.hfConfig, err = readOptional(filepath.Join(dir, encoderHFConfigFile)); err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	pooling := o.Pooling
	if pooling == "" {
		if pooling, err = readPoolingConfig(filepath.Join(dir, encoderPoolingFile)); err != nil {
			return nil, fmt.Errorf("text encoder %s: %w", dir, err)
		}
	}
	m, err := ir.Load(filepath.Join(dir, EncoderModelFile))
	if err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	e, err := NewTextEncoder(m, f, pooling, o.MaxTokens, o.Session)
	if err != nil {
		return nil, fmt.Errorf("text encoder %s: %w", dir, err)
	}
	return e, nil
}

// EncoderFiles are the files of an encoder directory that LoadTextEncoder
// may read (each may be missing): the graph, its external data under the
// names exporters give it, the tokenizer and model configs and the pooling
// config. A run records them, so a changed encoder is not taken for the one
// a saved PRMU was trained with.
func EncoderFiles(dir string) []string {
	var out []string
	for _, f := range []string{EncoderModelFile, EncoderModelFile + "_data", EncoderModelFile + ".data",
		encoderTokenizerFile, encoderTokConfigFile, encoderHFConfigFile, encoderPoolingFile} {
		out = append(out, filepath.Join(dir, f))
	}
	return out
}

func readOptional(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return b, err
}

// readPoolingConfig reads sentence-transformers' pooling config; exactly one
// of the mean and CLS modes must be on, and no other.
func readPoolingConfig(path string) (string, error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("no %s: set the encoder pooling (%q or %q) in the PRMU config, or copy the sentence-transformers model's 1_Pooling folder beside model.onnx", encoderPoolingFile, EncoderPoolMean, EncoderPoolCLS)
	}
	if err != nil {
		return "", err
	}
	var modes map[string]any
	if err := json.Unmarshal(raw, &modes); err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	var on []string
	for k, v := range modes {
		if b, ok := v.(bool); ok && b && len(k) > len("pooling_mode_") && k[:len("pooling_mode_")] == "pooling_mode_" {
			on = append(on, k)
		}
	}
	switch {
	case len(on) == 1 && on[0] == "pooling_mode_mean_tokens":
		return EncoderPoolMean, nil
	case len(on) == 1 && on[0] == "pooling_mode_cls_token":
		return EncoderPoolCLS, nil
	}
	return "", fmt.Errorf("%s turns on %v: tagpr pools by pooling_mode_mean_tokens or pooling_mode_cls_token alone (or set the encoder pooling in the PRMU config)", path, on)
}

// NewTextEncoder checks an exported encoder graph and opens a session on it
// with pooling appended. maxTokens 0 takes the default.
func NewTextEncoder(m *onnxpb.ModelProto, f encoderFiles, pooling string, maxTokens int, opts ort.Options) (*TextEncoder, error) {
	if pooling != EncoderPoolMean && pooling != EncoderPoolCLS {
		return nil, fmt.Errorf("pooling %q, want %q or %q", pooling, EncoderPoolMean, EncoderPoolCLS)
	}
	tok, err := tokenize.Parse(f.tokenizer, f.tokConfig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", encoderTokenizerFile, err)
	}
	limit, err := encoderTokenLimit(f.hfConfig, tok)
	if err != nil {
		return nil, err
	}
	switch {
	case maxTokens == 0:
		maxTokens = min(encoderMaxTokens, limit)
	case maxTokens < 0 || maxTokens > limit:
		return nil, fmt.Errorf("max tokens %d: the model reads 1 to %d tokens per text", maxTokens, limit)
	}
	e := &TextEncoder{Pooling: pooling, MaxTokens: maxTokens, files: f, tok: tok, export: m, pad: tok.PadToken(),
		prefix: tok.SpecialPrefix(), suffix: tok.SpecialSuffix()}
	if len(e.prefix)+len(e.suffix) >= maxTokens {
		return nil, fmt.Errorf("max tokens %d leaves no room for text between the tokenizer's special tokens", maxTokens)
	}
	if e.Dim, e.typeIDs, err = checkEncoderGraph(m, tok.VocabSize()); err != nil {
		return nil, err
	}
	if e.pooled, err = poolEncoder(m, pooling); err != nil {
		return nil, err
	}
	if e.SHA256, err = e.identity(); err != nil {
		return nil, err
	}
	b, err := ir.Marshal(e.pooled)
	if err != nil {
		return nil, err
	}
	if e.sess, err = ort.NewSession(b, "text encoder", opts); err != nil {
		return nil, err
	}
	return e, nil
}

// positionsAfterPadding are the model types whose position ids start
// after the padding index (transformers' create_position_ids_from_input_ids),
// so max_position_embeddings − 2 tokens fit.
var positionsAfterPadding = map[string]bool{"roberta": true, "xlm-roberta": true, "xlm-roberta-xl": true, "roberta-prelayernorm": true,
	"camembert": true, "mpnet": true, "data2vec-text": true, "longformer": true, "luke": true, "ibert": true, "xmod": true}

// encoderTokenLimit is the most tokens a text may have: the smaller of
// config.json's max_position_embeddings and tokenizer_config.json's
// model_max_length, where given.
func encoderTokenLimit(hfConfig []byte, tok *tokenize.Tokenizer) (int, error) {
	limit := math.MaxInt32
	if len(hfConfig) > 0 {
		var c struct {
			MaxPositions int    `json:"max_position_embeddings"`
			ModelType    string `json:"model_type"`
		}
		if err := json.Unmarshal(hfConfig, &c); err != nil {
			return 0, fmt.Errorf("%s: %w", encoderHFConfigFile, err)
		}
		if c.MaxPositions > 0 {
			limit = c.MaxPositions
			if positionsAfterPadding[c.ModelType] {
				limit -= 2 // positions start after the padding index
			}
		}
	}
	if n := tok.Config().ModelMaxLength; n > 0 {
		limit = min(limit, n)
	}
	return limit, nil
}

// checkEncoderGraph refuses a graph without the inputs and output of an
// Optimum feature-extraction export and returns its hidden size.
func checkEncoderGraph(m *onnxpb.ModelProto, vocab int) (dim int, typeIDs bool, err error) {
	g := m.GetGraph()
	if g == nil {
		return 0, false, fmt.Errorf("%s: no graph", EncoderModelFile)
	}
	if v := ir.OpsetOf(m, ""); v < encoderMinOpset {
		return 0, false, fmt.Errorf("%s: opset %d, need at least %d (export with --opset 14 or newer)", EncoderModelFile, v, encoderMinOpset)
	}
	have := map[string]bool{}
	for _, vi := range g.Input {
		switch name := vi.GetName(); name {
		case encoderIDs, encoderMask:
			have[name] = true
		case encoderTypeIDs:
			typeIDs = true
		default:
			return 0, false, fmt.Errorf("%s: input %q: tagpr feeds only %s, %s and %s (export with --task feature-extraction)", EncoderModelFile, name, encoderIDs, encoderMask, encoderTypeIDs)
		}
	}
	if !have[encoderIDs] || !have[encoderMask] {
		return 0, false, fmt.Errorf("%s: inputs %v, want %s and %s (export with --task feature-extraction)", EncoderModelFile, ir.WrapGraph(g).InputNames(), encoderIDs, encoderMask)
	}
	for _, vi := range g.Output {
		if vi.GetName() != encoderHidden {
			continue
		}
		_, dims, _, ok := ir.ShapeOf(vi)
		if !ok || len(dims) != 3 || dims[2] <= 0 {
			return 0, false, fmt.Errorf("%s: %s has shape %v, want [batch, sequence, hidden] with a fixed hidden size", EncoderModelFile, encoderHidden, dims)
		}
		for _, t := range g.Initializer {
			if d := t.GetDims(); len(d) == 2 && d[1] == dims[2] && d[0] < int64(vocab) && t.GetName() != "" && isWordEmbedding(g, t.GetName()) {
				return 0, false, fmt.Errorf("%s: the word embedding %q has %d rows, the tokenizer %d tokens", EncoderModelFile, t.GetName(), d[0], vocab)
			}
		}
		return int(dims[2]), typeIDs, nil
	}
	return 0, false, fmt.Errorf("%s: no output %q (export with --task feature-extraction)", EncoderModelFile, encoderHidden)
}

// isWordEmbedding reports whether an initializer is gathered by input_ids.
func isWordEmbedding(g *onnxpb.GraphProto, name string) bool {
	for _, n := range g.Node {
		if n.GetOpType() == "Gather" && len(n.Input) == 2 && n.Input[0] == name && n.Input[1] == encoderIDs {
			return true
		}
	}
	return false
}

// poolEncoder appends pooling to a copy of the export: the output becomes
// EncoderOutput [N,D]. Mean pooling is sentence-transformers': the masked sum
// over max(mask count, 1e-9).
func poolEncoder(m *onnxpb.ModelProto, pooling string) (*onnxpb.ModelProto, error) {
	out := ir.Clone(m)
	g := ir.WrapGraph(out.Graph)
	h := encoderHidden
	var emb string
	if pooling == EncoderPoolCLS {
		emb = g.Op("Gather", []string{h, g.Const("pool_c", ir.Scalar("", int64(0)))}, ir.AttrInt("axis", 1))
	} else {
		mask := g.Op("Cast", []string{encoderMask}, ir.AttrInt("to", int64(ir.Float)))                                         // [N,T]
		w := g.Op("Unsqueeze", []string{mask, g.ConstInt64s("pool_c", -1)})                                                    // [N,T,1]
		sum := g.Op("ReduceSum", []string{g.Op("Mul", []string{h, w}), g.ConstInt64s("pool_c", 1)}, ir.AttrInt("keepdims", 0)) // [N,D]
		count := g.Op("ReduceSum", []string{w, g.ConstInt64s("pool_c", 1)}, ir.AttrInt("keepdims", 0))                         // [N,1]
		emb = g.Op("Div", []string{sum, g.Op("Max", []string{count, g.Const("pool_c", ir.Scalar("", float32(1e-9)))})})
	}
	g.Node("Identity", []string{emb}, []string{EncoderOutput})
	var dim int64
	for _, vi := range out.Graph.Output {
		if vi.GetName() == h {
			_, d, _, _ := ir.ShapeOf(vi)
			dim = d[2]
		}
	}
	out.Graph.Output = nil
	g.Output(EncoderOutput, ir.Float, "batch", dim)
	if err := g.Err(); err != nil {
		return nil, fmt.Errorf("pool encoder: %w", err)
	}
	return out, nil
}

// identity hashes what the embeddings depend on.
func (e *TextEncoder) identity() (string, error) {
	b, err := ir.Marshal(e.export)
	if err != nil {
		return "", fmt.Errorf("hash encoder: %w", err)
	}
	h := sha256.New()
	for _, part := range [][]byte{[]byte("tagpr-text-encoder/1"), b, e.files.tokenizer, e.files.tokConfig,
		[]byte(e.Pooling), []byte(strconv.Itoa(e.MaxTokens))} {
		sum := sha256.Sum256(part)
		h.Write(sum[:])
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Close releases the session.
func (e *TextEncoder) Close() {
	if e.sess != nil {
		e.sess.Destroy()
		e.sess = nil
	}
}

// Stats are the encoder's runs so far.
func (e *TextEncoder) Stats() EncoderStats { return e.stats }

// Tokens are a text's ids as the encoder reads it: the tokenizer's special
// tokens around the text's first MaxTokens−specials tokens (HF truncation).
func (e *TextEncoder) Tokens(text string) []int64 {
	body := e.tok.Encode(text)
	body = body[:min(len(body), e.MaxTokens-len(e.prefix)-len(e.suffix))]
	ids := make([]int64, 0, len(e.prefix)+len(body)+len(e.suffix))
	return append(append(append(ids, e.prefix...), body...), e.suffix...)
}

// encoderBatch holds token rows laid out as the encoder's inputs: N rows of
// T tokens, right-padded, mask 1 on real tokens.
type encoderBatch struct {
	N, T          int
	ids, mask, tt []int64
}

func newEncoderBatch(N, T int) *encoderBatch {
	return &encoderBatch{N: N, T: T, ids: make([]int64, N*T), mask: make([]int64, N*T), tt: make([]int64, N*T)}
}

// set writes row i; ids longer than T are an error (Tokens never makes them).
func (b *encoderBatch) set(i int, ids []int64, pad int64) error {
	if len(ids) > b.T {
		return fmt.Errorf("encoder row %d has %d tokens, the batch %d", i, len(ids), b.T)
	}
	row, mask := b.ids[i*b.T:(i+1)*b.T], b.mask[i*b.T:(i+1)*b.T]
	for j := range row {
		row[j], mask[j] = pad, 0
		if j < len(ids) {
			row[j], mask[j] = ids[j], 1
		}
	}
	return nil
}

// values wraps the batch as the graph's inputs (no copies).
func (b *encoderBatch) values(typeIDs bool) (map[string]ort.Value, func(), error) {
	in := inputSet{}
	err := b.addTo(in, typeIDs)
	return in.done(err)
}

// addTo adds the batch's inputs to in.
func (b *encoderBatch) addTo(in inputSet, typeIDs bool) error {
	shape := []int64{int64(b.N), int64(b.T)}
	if err := addInput(in, encoderIDs, shape, b.ids); err != nil {
		return err
	}
	if err := addInput(in, encoderMask, shape, b.mask); err != nil {
		return err
	}
	if typeIDs {
		return addInput(in, encoderTypeIDs, shape, b.tt)
	}
	return nil
}

// Encode returns the pooled embedding of each text, all in one ORT run
// (padded to the longest text). Callers bound the batch.
func (e *TextEncoder) Encode(ctx context.Context, texts []string) ([][]float32, error) {
	if e.sess == nil {
		return nil, fmt.Errorf("text encoder: closed")
	}
	if len(texts) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	start := time.Now()
	rows := make([][]int64, len(texts))
	T := 1
	for i, s := range texts {
		rows[i] = e.Tokens(s)
		T = max(T, len(rows[i]))
	}
	b := newEncoderBatch(len(texts), T)
	for i, r := range rows {
		if err := b.set(i, r, e.pad); err != nil {
			return nil, err
		}
	}
	in, release, err := b.values(e.typeIDs)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := e.sess.Run(in, nil)
	if err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	defer res.Destroy()
	flat, err := ort.Data[float32](EncoderOutput, res.Get(EncoderOutput))
	if err != nil {
		return nil, fmt.Errorf("text encoder: %w", err)
	}
	if len(flat) != len(texts)*e.Dim {
		return nil, fmt.Errorf("text encoder: %d values for %d texts of width %d", len(flat), len(texts), e.Dim)
	}
	out := make([][]float32, len(texts))
	for i := range out {
		out[i] = append([]float32(nil), flat[i*e.Dim:(i+1)*e.Dim]...)
		for _, v := range out[i] {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return nil, fmt.Errorf("text encoder: the embedding of text %d (%.40q) is not finite", i, texts[i])
			}
		}
	}
	e.stats.Runs++
	e.stats.Texts += len(texts)
	e.stats.Seconds += time.Since(start).Seconds()
	return out, nil
}

// Save writes the encoder in the layout LoadTextEncoder reads: model.onnx,
// tokenizer.json (and tokenizer_config.json, config.json when it had them)
// verbatim, and 1_Pooling/config.json naming its pooling. Each file is
// written atomically.
func (e *TextEncoder) Save(dir string) error {
	if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(encoderPoolingFile)), 0o755); err != nil {
		return fmt.Errorf("save text encoder: %w", err)
	}
	if err := ir.Write(e.export, filepath.Join(dir, EncoderModelFile), ir.WriteOptions{}); err != nil {
		return fmt.Errorf("save text encoder: %w", err)
	}
	pool, err := json.MarshalIndent(map[string]any{
		"word_embedding_dimension": e.Dim,
		"pooling_mode_cls_token":   e.Pooling == EncoderPoolCLS,
		"pooling_mode_mean_tokens": e.Pooling == EncoderPoolMean,
	}, "", "  ")
	if err != nil {
		return fmt.Errorf("save text encoder: %w", err)
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{encoderTokenizerFile, e.files.tokenizer}, {encoderTokConfigFile, e.files.tokConfig},
		{encoderHFConfigFile, e.files.hfConfig}, {encoderPoolingFile, append(pool, '\n')}} {
		if f.data == nil {
			continue
		}
		if err := renameio.WriteFile(filepath.Join(dir, f.name), f.data, 0o644); err != nil {
			return fmt.Errorf("save text encoder: %w", err)
		}
	}
	return nil
}
