package lm

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// TokenIDs is a token id field of config.json or generation_config.json,
// which Hugging Face writes either as one number or as a list.
type TokenIDs []int64

func (t *TokenIDs) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		*t = nil
		return nil
	}
	if len(b) > 0 && b[0] == '[' {
		var ids []int64
		if err := json.Unmarshal(b, &ids); err != nil {
			return err
		}
		*t = ids
		return nil
	}
	var id int64
	if err := json.Unmarshal(b, &id); err != nil {
		return fmt.Errorf("want a token id or a list of them, got %s", b)
	}
	*t = TokenIDs{id}
	return nil
}

// HFConfig is the part of a Hugging Face config.json that tagpr reads, for
// both the GPT-2 key names (n_embd, n_head…) and the Llama/Qwen ones
// (hidden_size, num_attention_heads…).
type HFConfig struct {
	ModelType     string   `json:"model_type"`
	Architectures []string `json:"architectures,omitempty"`
	VocabSize     int      `json:"vocab_size"`

	// Llama/Qwen names.
	HiddenSize        int     `json:"hidden_size,omitempty"`
	NumAttentionHeads int     `json:"num_attention_heads,omitempty"`
	NumKeyValueHeads  int     `json:"num_key_value_heads,omitempty"`
	NumHiddenLayers   int     `json:"num_hidden_layers,omitempty"`
	HeadDim           int     `json:"head_dim,omitempty"`
	IntermediateSize  int     `json:"intermediate_size,omitempty"`
	MaxPositions      int     `json:"max_position_embeddings,omitempty"`
	RMSNormEps        float64 `json:"rms_norm_eps,omitempty"`
	RopeTheta         float64 `json:"rope_theta,omitempty"`
	HiddenAct         string  `json:"hidden_act,omitempty"`
	AttentionBias     bool    `json:"attention_bias,omitempty"`

	// GPT-2 names.
	NEmbd              int     `json:"n_embd,omitempty"`
	NHead              int     `json:"n_head,omitempty"`
	NLayer             int     `json:"n_layer,omitempty"`
	NInner             *int    `json:"n_inner,omitempty"`
	NPositions         int     `json:"n_positions,omitempty"`
	LayerNormEpsilon   float64 `json:"layer_norm_epsilon,omitempty"`
	ActivationFunction string  `json:"activation_function,omitempty"`

	TieWordEmbeddings *bool    `json:"tie_word_embeddings,omitempty"`
	BOSTokenID        TokenIDs `json:"bos_token_id,omitempty"`
	EOSTokenID        TokenIDs `json:"eos_token_id,omitempty"`
	PadTokenID        TokenIDs `json:"pad_token_id,omitempty"`
}

// Heads is the number of query heads.
func (c *HFConfig) Heads() int {
	if c.NumAttentionHeads > 0 {
		return c.NumAttentionHeads
	}
	return c.NHead
}

// KVHeads is the number of key/value heads (the query heads when not grouped).
func (c *HFConfig) KVHeads() int {
	if c.NumKeyValueHeads > 0 {
		return c.NumKeyValueHeads
	}
	return c.Heads()
}

// Hidden is the model width.
func (c *HFConfig) Hidden() int {
	if c.HiddenSize > 0 {
		return c.HiddenSize
	}
	return c.NEmbd
}

// HeadDimension is head_dim, or the width over the heads.
func (c *HFConfig) HeadDimension() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if h := c.Heads(); h > 0 && c.Hidden() > 0 {
		return c.Hidden() / h
	}
	return 0
}

// Layers is the number of decoder layers.
func (c *HFConfig) Layers() int {
	if c.NumHiddenLayers > 0 {
		return c.NumHiddenLayers
	}
	return c.NLayer
}

// GenerationConfig is the part of generation_config.json tagpr reads.
// The sampling keys are nil when the file leaves them out (or sets null);
// Generate never applies them (callers that want the file's sampling
// defaults, such as `tagpr serve`, read them here).
type GenerationConfig struct {
	BOSTokenID   TokenIDs `json:"bos_token_id,omitempty"`
	EOSTokenID   TokenIDs `json:"eos_token_id,omitempty"`
	PadTokenID   TokenIDs `json:"pad_token_id,omitempty"`
	MaxNewTokens int      `json:"max_new_tokens,omitempty"`
	DoSample     *bool    `json:"do_sample,omitempty"`
	Temperature  *float64 `json:"temperature,omitempty"`
	TopK         *int     `json:"top_k,omitempty"`
	TopP         *float64 `json:"top_p,omitempty"`
	// RepetitionPenalty applies with do_sample false too, as in
	// transformers.
	RepetitionPenalty *float64 `json:"repetition_penalty,omitempty"`

	// Path is the file it was read from ("" when not read from a file).
	Path string `json:"-"`
	// Unimplemented are the file's keys that change how transformers picks
	// tokens and that tagpr's sampler does not implement, set to other than
	// their neutral value, as "key=value" (min_p=0.05), sorted.
	Unimplemented []string `json:"-"`
}

// unimplementedSampling are generation_config.json keys transformers
// applies while picking tokens that tagpr does not, with their neutral
// values (null is neutral for each).
var unimplementedSampling = map[string]any{
	"encoder_repetition_penalty": 1.0, "min_p": 0.0, "typical_p": 1.0,
	"epsilon_cutoff": 0.0, "eta_cutoff": 0.0, "no_repeat_ngram_size": 0.0, "encoder_no_repeat_ngram_size": 0.0,
	"num_beams": 1.0, "penalty_alpha": 0.0, "diversity_penalty": 0.0, "min_length": 0.0, "min_new_tokens": 0.0,
	"guidance_scale": 1.0, "bad_words_ids": nil, "suppress_tokens": nil, "begin_suppress_tokens": nil,
	"forced_bos_token_id": nil, "forced_eos_token_id": nil, "sequence_bias": nil,
	"exponential_decay_length_penalty": nil, "force_words_ids": nil, "constraints": nil,
}

func (c *GenerationConfig) UnmarshalJSON(b []byte) error {
	type plain GenerationConfig // without this method
	var p plain
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	var raw map[string]any
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*c = GenerationConfig(p)
	c.Unimplemented = nil
	for k, v := range raw {
		neutral, ok := unimplementedSampling[k]
		if !ok || v == nil || v == neutral {
			continue
		}
		if l, isList := v.([]any); isList && len(l) == 0 {
			continue
		}
		if m, isMap := v.(map[string]any); isMap && len(m) == 0 {
			continue
		}
		vb, _ := json.Marshal(v)
		c.Unimplemented = append(c.Unimplemented, k+"="+string(vb))
	}
	slices.Sort(c.Unimplemented)
	return nil
}

// ReadHFConfig reads a config.json; a missing file is (nil, nil).
func ReadHFConfig(path string) (*HFConfig, error) {
	var c HFConfig
	ok, err := readJSON(path, &c)
	if !ok || err != nil {
		return nil, err
	}
	return &c, nil
}

// ReadGenerationConfig reads a generation_config.json; a missing file is (nil, nil).
func ReadGenerationConfig(path string) (*GenerationConfig, error) {
	var c GenerationConfig
	ok, err := readJSON(path, &c)
	if !ok || err != nil {
		return nil, err
	}
	c.Path = path
	return &c, nil
}

func readJSON(path string, v any) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", path, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("parse %s: %w", path, err)
	}
	return true, nil
}

// configDirs are the folders where config.json may sit for a model file:
// beside it, and one up when the model is in an onnx/ subfolder (the
// transformers.js layout).
func configDirs(modelPath string) []string {
	d := filepath.Dir(modelPath)
	out := []string{d}
	if filepath.Base(d) == "onnx" {
		out = append(out, filepath.Dir(d))
	}
	return out
}

// Files lists the files a load of modelPath reads that exist: the model,
// its external-data file (model.onnx.data or Optimum's model.onnx_data),
// and the config.json and generation_config.json findConfigs looks for, so
// each can be verified against its pin.
func Files(modelPath string) []string {
	out := []string{modelPath}
	cands := []string{modelPath + ".data", modelPath + "_data"}
	for _, d := range configDirs(modelPath) {
		cands = append(cands, filepath.Join(d, "config.json"), filepath.Join(d, "generation_config.json"))
	}
	for _, c := range cands {
		if _, err := os.Stat(c); err == nil {
			out = append(out, c)
		}
	}
	return out
}

// findConfigs reads config.json and generation_config.json for a model file.
func findConfigs(modelPath string) (*HFConfig, *GenerationConfig, error) {
	var hc *HFConfig
	var gc *GenerationConfig
	for _, d := range configDirs(modelPath) {
		if hc == nil {
			c, err := ReadHFConfig(filepath.Join(d, "config.json"))
			if err != nil {
				return nil, nil, err
			}
			hc = c
		}
		if gc == nil {
			c, err := ReadGenerationConfig(filepath.Join(d, "generation_config.json"))
			if err != nil {
				return nil, nil, err
			}
			gc = c
		}
	}
	return hc, gc, nil
}

// ResolveModelPath accepts a model file or a folder holding model.onnx (or
// onnx/model.onnx, the transformers.js layout) and returns the file.
func ResolveModelPath(p string) (string, error) {
	st, err := os.Stat(p)
	if err != nil {
		return "", fmt.Errorf("model %s: %w", p, err)
	}
	if !st.IsDir() {
		return p, nil
	}
	for _, c := range []string{"model.onnx", filepath.Join("onnx", "model.onnx")} {
		f := filepath.Join(p, c)
		if _, err := os.Stat(f); err == nil {
			return f, nil
		}
	}
	if ckpt, _ := filepath.Glob(filepath.Join(p, "*.safetensors")); len(ckpt) > 0 {
		return "", fmt.Errorf("model %s: a Hugging Face checkpoint (%s), not an ONNX model: convert it once with "+
			"`tagpr model import-hf %s --out %s-onnx` (or optimum-cli export onnx) and use that folder", p, filepath.Base(ckpt[0]), p, filepath.Clean(p))
	}
	return "", fmt.Errorf("model %s: a folder without model.onnx or onnx/model.onnx", p)
}
