package lm

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// TestValidateRefusesBrokenNumericSettings: a rotary base, normalization
// epsilon or init std that is non-finite or out of range builds a model whose
// logits are NaN (or a config.json that cannot be written), so Validate
// refuses it by name before anything is written.
func TestValidateRefusesBrokenNumericSettings(t *testing.T) {
	for _, tc := range []struct {
		name string
		set  func(*Config)
		want string
	}{
		{"rope_theta negative", func(c *Config) { c.RopeTheta = -1 }, "rope_theta"},
		{"rope_theta NaN", func(c *Config) { c.RopeTheta = math.NaN() }, "rope_theta"},
		{"rope_theta Inf", func(c *Config) { c.RopeTheta = math.Inf(1) }, "rope_theta"},
		{"norm_eps negative", func(c *Config) { c.NormEps = -1 }, "norm_eps"},
		{"norm_eps NaN", func(c *Config) { c.NormEps = math.NaN() }, "norm_eps"},
		{"norm_eps Inf", func(c *Config) { c.NormEps = math.Inf(1) }, "norm_eps"},
		{"init_std Inf", func(c *Config) { c.InitStd = math.Inf(1) }, "init_std"},
		// Per-position tables are allocated from max_positions: an absurd
		// one ran out of memory building the rotary tables.
		{"max_positions huge", func(c *Config) { c.MaxPositions = 400_000_000 }, "lower max_position_embeddings in config.json"},
		{"gpt2 max_positions huge", func(c *Config) { c.Arch = GPT2; c.MaxPositions = 400_000_000 }, "max_positions 400000000 × d_model 32"},
		// gpt2 has no grouped KV: a kv_heads given was overwritten by
		// heads (policy.builtin.kv_heads, model init --kv-heads ignored).
		{"gpt2 kv_heads", func(c *Config) { c.Arch, c.KVHeads = GPT2, 1 }, "gpt2 has no grouped KV heads (kv_heads 1, heads 2)"},
	} {
		c := Config{Arch: Llama, Layers: 1, DModel: 32, Heads: 2, Vocab: 64}
		tc.set(&c)
		err := c.Defaults().Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Validate = %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	ok := Config{Arch: Llama, Layers: 1, DModel: 32, Heads: 2, Vocab: 64}
	if err := ok.Defaults().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	g := Config{Arch: GPT2, Layers: 1, DModel: 32, Heads: 2, Vocab: 64, RopeTheta: -1}
	if err := g.Defaults().Validate(); err != nil {
		t.Fatalf("gpt2 has no rotary positions, its rope_theta is ignored: %v", err)
	}
}

// A pad token taken from the model's files (pad_token_id, else the first
// eos_token_id) that is outside the vocab is refused naming where it came
// from: the message said "pad token N" to a user whose files set no pad.
func TestGenerateNamesWherePadCameFrom(t *testing.T) {
	pm, err := Build(testConfigs()["llama"])
	if err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(b, "llama", LoadOptions{Session: ort.Options{IntraOpThreads: 1}, Generation: &GenerationConfig{EOSTokenID: TokenIDs{99999}}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	_, _, err = m.Generate(context.Background(), testPrompts, GenerateOptions{MaxNewTokens: 2})
	if err == nil || !strings.Contains(err.Error(), "eos_token_id, from generation_config.json or config.json") {
		t.Fatalf("eos 99999 as pad: %v", err)
	}
}
