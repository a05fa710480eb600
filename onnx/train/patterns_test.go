package train

import (
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// namedLlama is the PyTorch Llama fixture with Hugging Face weight names.
func namedLlama(t *testing.T) *onnxpb.ModelProto {
	t.Helper()
	f := loadFixture(t, "llama")
	if _, err := lm.NameWeights(f.model); err != nil {
		t.Fatal(err)
	}
	return f.model
}

func layerModules(layers []int, parts ...string) []string {
	var out []string
	for _, l := range layers {
		for _, p := range parts {
			out = append(out, "model.layers."+string(rune('0'+l))+"."+p)
		}
	}
	return out
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	seen := map[string]int{}
	for _, x := range a {
		seen[x]++
	}
	for _, x := range b {
		seen[x]--
	}
	for _, v := range seen {
		if v != 0 {
			return false
		}
	}
	return true
}

// Every --trainable pattern selects whole modules by their Hugging Face
// names; each case names exactly what the pattern matched.
func TestTrainablePatternsMatchModules(t *testing.T) {
	m := namedLlama(t)
	layer0 := layerModules([]int{0}, "input_layernorm", "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
		"self_attn.o_proj", "post_attention_layernorm", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
	cases := []struct {
		pattern string
		modules []string
	}{
		// The case: all nine tensors of layer 0, projections included.
		{"model.layers.0.*", layer0},
		{"q_proj", layerModules([]int{0, 1}, "self_attn.q_proj")},
		{"*q_proj*", layerModules([]int{0, 1}, "self_attn.q_proj")},
		{"self_attn.o_proj", layerModules([]int{0, 1}, "self_attn.o_proj")},
		{`re:.*\.mlp\..*`, layerModules([]int{0, 1}, "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")},
		{"lm_head", []string{"lm_head"}},
		{"model.norm.weight", []string{"model.norm"}},
	}
	for _, c := range cases {
		tg, _, err := BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, Trainable: []string{c.pattern}})
		if err != nil {
			t.Fatalf("%q: %v", c.pattern, err)
		}
		if len(tg.Selected) != 1 || !sameSet(tg.Selected[0].Modules, c.modules) || len(tg.Selected[0].Params) != 0 {
			t.Errorf("%q matched %v, want modules %v", c.pattern, tg.Selected, c.modules)
		}
		var wantParams []string
		for _, mod := range c.modules {
			wantParams = append(wantParams, mod+".weight")
		}
		if !sameSet(tg.Params, wantParams) {
			t.Errorf("%q trains %v, want %v", c.pattern, tg.Params, wantParams)
		}
		t.Logf("%s", tg.Selected[0])
	}
}

// A pattern that matches nothing, or part of a module, is an error that
// says what it matched.
func TestTrainablePatternErrors(t *testing.T) {
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.AttentionBias = true // q/k/v have a weight and a bias
	built, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		model    *onnxpb.ModelProto
		patterns []string
		want     []string
	}{
		{namedLlama(t), []string{"*q_pro"}, []string{`"*q_pro" matches no weight`, "model.layers.0.input_layernorm"}},
		{built, []string{"*.bias"}, []string{"selects part of module model.layers.0.self_attn.q_proj", "model.layers.0.self_attn.q_proj.bias but not model.layers.0.self_attn.q_proj.weight"}},
		{built, []string{"*q_proj.weight"}, []string{"part of module model.layers.0.self_attn.q_proj", "but not model.layers.0.self_attn.q_proj.bias"}},
	}
	for _, c := range cases {
		_, _, err := BuildLMTraining(c.model, LMTraining{Batch: 1, SeqLen: 4, Trainable: c.patterns})
		if err == nil {
			t.Fatalf("%v: no error", c.patterns)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", c.patterns, err, w)
			}
		}
		t.Logf("%v: %v", c.patterns, err)
	}
	// Both halves of the module together are fine.
	tg, _, err := BuildLMTraining(built, LMTraining{Batch: 1, SeqLen: 4, Trainable: []string{"*q_proj.weight", "*q_proj.bias"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(tg.Params) != 2*cfg.Layers {
		t.Errorf("q_proj weight+bias: %v", tg.Params)
	}
}

// LoRA targets name linear layers; the default is every attention and MLP
// projection, not the lm head (PEFT's all-linear).
func TestLoRATargetPatterns(t *testing.T) {
	m := namedLlama(t)
	all := layerModules([]int{0, 1}, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
		"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")
	cases := []struct {
		targets []string
		modules []string
	}{
		{nil, all},
		{[]string{"*q_proj*"}, layerModules([]int{0, 1}, "self_attn.q_proj")},
		{[]string{"q_proj", "v_proj"}, layerModules([]int{0, 1}, "self_attn.q_proj", "self_attn.v_proj")},
		{[]string{"model.layers.1.*"}, layerModules([]int{1}, "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
			"mlp.gate_proj", "mlp.up_proj", "mlp.down_proj")},
		{[]string{"lm_head"}, []string{"lm_head"}},
	}
	for _, c := range cases {
		tg, ads, err := BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, LoRA: &LoRA{Rank: 2, Targets: c.targets}})
		if err != nil {
			t.Fatalf("%v: %v", c.targets, err)
		}
		var got, matched []string
		for _, a := range ads {
			got = append(got, a.Module)
		}
		for _, s := range tg.Selected {
			matched = append(matched, s.Modules...)
		}
		if !sameSet(got, c.modules) || !sameSet(matched, c.modules) {
			t.Errorf("%v: adapters on %v (matched %v), want %v", c.targets, got, tg.Selected, c.modules)
		}
		for _, p := range tg.Params {
			if !strings.HasSuffix(p, ".lora_A") && !strings.HasSuffix(p, ".lora_B") {
				t.Errorf("%v: trains %q", c.targets, p)
			}
		}
		t.Logf("%v", tg.Selected)
	}
	for _, c := range []struct {
		targets []string
		want    []string
	}{
		{[]string{"*norm*"}, []string{"matches no linear layer, only model.layers.0.input_layernorm, model.layers.0.post_attention_layernorm, model.layers.1.input_layernorm, model.layers.1.post_attention_layernorm, model.norm;"}},
		{[]string{"*.weight"}, []string{"matches the weights lm_head.weight, model.layers.0.mlp.down_proj.weight", "not modules", `"lm_head"`}},
		{[]string{"*q_proj.weight"}, []string{"matches the weights model.layers.0.self_attn.q_proj.weight, model.layers.1.self_attn.q_proj.weight, not modules", `"model.layers.0.self_attn.q_proj"`}},
		{[]string{"q_proj", "attn_out"}, []string{`"attn_out" matches nothing`, "model.layers.0.mlp.down_proj"}},
	} {
		_, _, err := BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, LoRA: &LoRA{Rank: 2, Targets: c.targets}})
		if err == nil {
			t.Fatalf("%v: no error", c.targets)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %q does not say %q", c.targets, err, w)
			}
		}
		t.Logf("%v: %v", c.targets, err)
	}
}

// On a tied model the lm head has no weight of its own: targeting it says
// so, not that the pattern matches nothing.
func TestLoRATargetsTiedHead(t *testing.T) {
	tie := true
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 2, Vocab: 40, TieEmbeddings: &tie})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lm.NameWeights(m); err != nil {
		t.Fatal(err)
	}
	_, _, err = BuildLMTraining(m, LMTraining{Batch: 1, SeqLen: 4, LoRA: &LoRA{Rank: 2, Targets: []string{"lm_head"}}})
	if err == nil || !strings.Contains(err.Error(), "tied to the input embedding") || !strings.Contains(err.Error(), "self_attn") {
		t.Fatalf("lm_head on a tied model: %v", err)
	}
}
