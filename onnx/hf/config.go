package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
)

// Families are the model_types Import builds.
var Families = []string{"llama", "mistral", "qwen2", "qwen3"}

// harmlessKeys are config.json entries that do not change what the model
// computes at inference (transformers' generic PretrainedConfig fields,
// dropout, init and bookkeeping).
var harmlessKeys = setOf("_name_or_path", "add_cross_attention", "architectures", "bad_words_ids", "begin_suppress_tokens",
	"chunk_size_feed_forward", "cross_attention_hidden_size", "decoder_start_token_id", "diversity_penalty", "do_sample",
	"dtype", "torch_dtype", "early_stopping", "encoder_no_repeat_ngram_size", "exponential_decay_length_penalty",
	"finetuning_task", "forced_bos_token_id", "forced_eos_token_id", "id2label", "label2id", "is_decoder",
	"is_encoder_decoder", "length_penalty", "max_length", "min_length", "no_repeat_ngram_size", "num_beam_groups",
	"num_beams", "num_return_sequences", "output_attentions", "output_hidden_states", "output_scores", "prefix",
	"problem_type", "pruned_heads", "remove_invalid_values", "repetition_penalty", "return_dict",
	"return_dict_in_generate", "sep_token_id", "suppress_tokens", "task_specific_params", "temperature",
	"tf_legacy_loss", "tie_encoder_decoder", "tokenizer_class", "top_k", "top_p", "torchscript", "transformers_version",
	"typical_p", "use_bfloat16", "use_cache", "initializer_range", "attention_dropout", "pretraining_tp",
	"bos_token_id", "eos_token_id", "pad_token_id", "model_type", "vocab_size", "hidden_size", "intermediate_size",
	"num_hidden_layers", "num_attention_heads", "num_key_value_heads", "head_dim", "hidden_act",
	"max_position_embeddings", "rms_norm_eps", "rope_theta", "rope_scaling", "rope_parameters", "tie_word_embeddings",
	"attention_bias", "mlp_bias", "sliding_window", "use_sliding_window", "max_window_layers", "layer_types",
	"embd_pdrop", "resid_pdrop", "attn_pdrop", "dropout",
	"tagpr_builtin") // the built-in model's own sizes, written beside its config

// harmlessWhenOff are entries that change nothing while false or null
// (Qwen2 configs written by some tools carry use_mrope: false).
var harmlessWhenOff = setOf("use_mrope")

func setOf(s ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range s {
		m[x] = true
	}
	return m
}

// hfModelConfig is the part of config.json Import reads.
type hfModelConfig struct {
	ModelType         string          `json:"model_type"`
	VocabSize         int             `json:"vocab_size"`
	HiddenSize        int             `json:"hidden_size"`
	IntermediateSize  int             `json:"intermediate_size"`
	NumHiddenLayers   int             `json:"num_hidden_layers"`
	NumAttentionHeads int             `json:"num_attention_heads"`
	NumKeyValueHeads  int             `json:"num_key_value_heads"`
	HeadDim           int             `json:"head_dim"`
	HiddenAct         string          `json:"hidden_act"`
	MaxPositions      int             `json:"max_position_embeddings"`
	RMSNormEps        float64         `json:"rms_norm_eps"`
	RopeTheta         float64         `json:"rope_theta"`
	RopeScaling       json.RawMessage `json:"rope_scaling"`
	RopeParameters    json.RawMessage `json:"rope_parameters"`
	TieWordEmbeddings *bool           `json:"tie_word_embeddings"`
	AttentionBias     bool            `json:"attention_bias"`
	MLPBias           bool            `json:"mlp_bias"`
	SlidingWindow     *int            `json:"sliding_window"`
	UseSlidingWindow  bool            `json:"use_sliding_window"`
	LayerTypes        []string        `json:"layer_types"`
	BOSTokenID        lm.TokenIDs     `json:"bos_token_id"`
	EOSTokenID        lm.TokenIDs     `json:"eos_token_id"`
	PadTokenID        lm.TokenIDs     `json:"pad_token_id"`
	Quantization      json.RawMessage `json:"quantization_config"`
}

// readModelConfig reads dir/config.json and turns it into the builder's
// Config, refusing by name every model_type and setting it cannot build.
func readModelConfig(dir string) (lm.Config, []byte, error) {
	var hc hfModelConfig
	raw, keys, fail0, err := readConfigJSON(dir, &hc)
	if err != nil {
		return lm.Config{}, nil, err
	}
	fail := func(format string, a ...any) (lm.Config, []byte, error) {
		return lm.Config{}, nil, fail0(format, a...)
	}
	if !contains(Families, hc.ModelType) {
		return fail("model_type %q is not supported; tagpr imports %s", hc.ModelType, strings.Join(Families, ", "))
	}
	if len(hc.Quantization) > 0 && string(hc.Quantization) != "null" {
		return fail("quantization_config: quantized checkpoints are not supported")
	}
	unknown := unknownKeys(keys, func(k, v string) bool { return harmlessKeys[k] || harmlessWhenOff[k] && (v == "false" || v == "null") })
	if len(unknown) > 0 {
		return fail("%s not supported: tagpr cannot tell whether the model computes the same without %s (known %s fields: the sizes, rotary and norm settings, biases, sliding windows)",
			plural(unknown, "field"), them(unknown), hc.ModelType)
	}
	if hc.HiddenAct != "silu" && hc.HiddenAct != "swish" {
		return fail("hidden_act %q is not supported (the %s MLP tagpr builds uses silu)", hc.HiddenAct, hc.ModelType)
	}
	theta, err := ropeTheta(hc)
	if err != nil {
		return fail("%v", err)
	}
	for i, t := range hc.LayerTypes {
		if t != "full_attention" {
			return fail("layer_types[%d] is %q: only full attention layers are supported", i, t)
		}
	}
	window := 0
	switch hc.ModelType {
	case "mistral":
		if hc.SlidingWindow != nil && *hc.SlidingWindow < hc.MaxPositions {
			window = *hc.SlidingWindow
		}
	case "qwen2", "qwen3":
		if hc.UseSlidingWindow {
			return fail("use_sliding_window true (sliding attention on the layers past max_window_layers) is not supported")
		}
	default:
		if hc.SlidingWindow != nil {
			return fail("sliding_window %d: a %s model has no sliding window", *hc.SlidingWindow, hc.ModelType)
		}
	}
	if hc.MLPBias && hc.ModelType != "llama" {
		return fail("mlp_bias: a %s model has no MLP biases", hc.ModelType)
	}
	tie := false
	if hc.TieWordEmbeddings != nil {
		tie = *hc.TieWordEmbeddings
	}
	c := lm.Config{
		Arch: lm.Llama, Layers: hc.NumHiddenLayers, DModel: hc.HiddenSize, Heads: hc.NumAttentionHeads,
		KVHeads: hc.NumKeyValueHeads, HeadDim: hc.HeadDim, FFN: hc.IntermediateSize, Vocab: hc.VocabSize,
		MaxPositions: hc.MaxPositions, RopeTheta: theta, NormEps: hc.RMSNormEps, TieEmbeddings: &tie,
		SlidingWindow: window, DType: "float32",
	}
	switch hc.ModelType {
	case "qwen2":
		c.AttentionBias = true // Qwen2's q/k/v always carry biases, o_proj none
	case "qwen3":
		c.QKNorm = true
		c.AttentionBias, c.OutputBias = hc.AttentionBias, hc.AttentionBias
	case "llama", "mistral":
		c.AttentionBias, c.OutputBias, c.MLPBias = hc.AttentionBias, hc.AttentionBias, hc.MLPBias
	}
	if c.KVHeads == 0 {
		c.KVHeads = c.Heads
	}
	if c.NormEps == 0 {
		c.NormEps = 1e-6
	}
	for name, ids := range map[string]lm.TokenIDs{"bos_token_id": hc.BOSTokenID, "eos_token_id": hc.EOSTokenID} {
		if len(ids) > 0 && ids[0] >= 0 && ids[0] < int64(hc.VocabSize) {
			if name == "bos_token_id" {
				c.BOS = ids[0]
			} else {
				c.EOS = ids[0]
			}
		}
	}
	if len(hc.PadTokenID) > 0 && hc.PadTokenID[0] >= 0 && hc.PadTokenID[0] < int64(hc.VocabSize) {
		c.Pad = &hc.PadTokenID[0]
	}
	for k, v := range map[string]int{"num_hidden_layers": c.Layers, "hidden_size": c.DModel, "num_attention_heads": c.Heads,
		"intermediate_size": c.FFN, "vocab_size": c.Vocab, "max_position_embeddings": c.MaxPositions} {
		if v <= 0 {
			return fail("%s is %d or missing; want a positive size", k, v)
		}
	}
	full := c.Defaults()
	if err := full.Validate(); err != nil {
		return fail("%v", err)
	}
	return c, raw, nil
}

// ropeTheta reads the rotary base, refusing scaled rotary positions (the
// builder computes plain rotate-half positions only).
func ropeTheta(hc hfModelConfig) (float64, error) {
	theta := hc.RopeTheta
	for _, f := range []struct {
		name string
		raw  json.RawMessage
	}{{"rope_scaling", hc.RopeScaling}, {"rope_parameters", hc.RopeParameters}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		var p map[string]any
		if err := json.Unmarshal(f.raw, &p); err != nil {
			return 0, fmt.Errorf("%s: %v", f.name, err)
		}
		kind, _ := p["rope_type"].(string)
		if kind == "" {
			kind, _ = p["type"].(string)
		}
		if kind != "" && kind != "default" {
			return 0, fmt.Errorf("%s %s: rotary scaling of type %q is not supported (only unscaled rotary positions)", f.name, compact(f.raw), kind)
		}
		if t, ok := p["rope_theta"].(float64); ok {
			theta = t
		}
	}
	if theta == 0 {
		theta = 10000
	}
	return theta, nil
}

func compact(b []byte) string {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return string(b)
	}
	return buf.String()
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func plural(s []string, word string) string {
	if len(s) == 1 {
		return fmt.Sprintf("%s %q is", word, s[0])
	}
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return fmt.Sprintf("%ss %s are", word, strings.Join(q, ", "))
}

func them(s []string) string {
	if len(s) == 1 {
		return "it"
	}
	return "them"
}

// readConfigJSON reads dir/config.json into v and returns its bytes, its
// top-level entries and how to fail naming the file.
func readConfigJSON(dir string, v any) ([]byte, map[string]json.RawMessage, func(format string, a ...any) error, error) {
	path := filepath.Join(dir, "config.json")
	fail := func(format string, a ...any) error {
		return fmt.Errorf("import: %s: "+format, append([]any{path}, a...)...)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("import %s: %w", dir, err)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal(raw, &keys); err != nil {
		return nil, nil, nil, fail("not a JSON object: %v", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return nil, nil, nil, fail("%v", err)
	}
	return raw, keys, fail, nil
}

// unknownKeys are the entries known does not accept, sorted.
func unknownKeys(keys map[string]json.RawMessage, known func(k, v string) bool) []string {
	var unknown []string
	for k, v := range keys {
		if !known(k, strings.TrimSpace(string(v))) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	return unknown
}

// openFitting opens dir's checkpoint, refusing one whose tensors hold fewer
// values than config.json implies (need; sizes names the fields), before a
// builder lays out a graph from sizes off by orders of magnitude.
func openFitting(dir string, need float64, sizes string) (*Checkpoint, error) {
	ck, err := OpenCheckpoint(dir)
	if err != nil {
		return nil, err
	}
	if have := ck.Elements(); need > float64(have) {
		ck.Close()
		return nil, fmt.Errorf("import %s: config.json implies at least %.4g weights (%s) but the checkpoint's tensors hold %d values: config.json does not describe these weights (is it the checkpoint's own?)",
			dir, need, sizes, have)
	}
	return ck, nil
}
