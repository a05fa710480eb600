//go:build trlpeer

package grpo

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/ir"
)

// TestStepMatchesTRLPeer runs one generation round of tagpr and of TRL
// 1.16's GRPOTrainer on the same tiny Llama and the same completions, and
// compares every metric both log under TRL's names. TRL gets tagpr's
// sampled ids through its rollout_func (scripts/grpo/trl_step_peer.py) and
// computes the rewards, advantages, reference and old log-probs, loss,
// gradient and AdamW updates itself, so with num_iterations 2 the second
// update's loss, kl and clip ratios check the first update too. It needs
// TRL, so it is built only with the trlpeer tag (the suite needs no
// Python): TAGPR_TRL_PYTHON=PY go test -tags trlpeer -run TestStepMatchesTRLPeer
// ./pipeline/grpo, PY a Python that has TRL (scripts/bench/README_trl.md).
func TestStepMatchesTRLPeer(t *testing.T) {
	py := os.Getenv("TAGPR_TRL_PYTHON")
	if py == "" {
		t.Fatal("TAGPR_TRL_PYTHON is unset: name a Python with trl 1.16 (scripts/bench/README_trl.md)")
	}
	dir := t.TempDir()
	script := filepath.Join("..", "..", "scripts", "grpo", "trl_step_peer.py")
	peer := func(cmd string) {
		t.Helper()
		if out, err := exec.Command(py, script, cmd, dir).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", script, cmd, err, out)
		}
	}
	peer("build")
	im, err := hf.Import(filepath.Join(dir, "hf"), filepath.Join(dir, "onnx"), hf.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	model, err := ir.Load(im.Model)
	if err != nil {
		t.Fatal(err)
	}
	base := Config{NumGenerations: 4, MaxCompletionLength: 6, Steps: 1, PromptsPerStep: 2, LearningRate: 0.01,
		Beta: 0.04, NumIterations: 2, MaxGradNorm: 1, Seed: 5}
	off := false
	cases := map[string]func(*Config){
		"dapo group": func(*Config) {},
		"grpo batch": func(c *Config) { c.LossType, c.ScaleRewards, c.EpsilonHigh = LossGRPO, ScaleBatch, 0.28 },
		"dr_grpo": func(c *Config) {
			c.LossType, c.ScaleRewards, c.UseBiasCorrectionKL, c.WeightDecay = LossDrGRPO, ScaleNone, &off, 0.1
		},
		"no clipping": func(c *Config) { c.MaxGradNorm, c.Epsilon, c.Beta = 0, 0.1, 0 },
		"masked":      func(c *Config) { c.MaxCompletionLength, c.MaskTruncatedCompletions = 40, true },
		// The policy is softmax(logits/τ) on both sides; top-k only restricts the draw.
		"temperature": func(c *Config) { c.Temperature, c.TopK = 0.7, 10 },
	}
	reward := Func("reward", func(s Sample) float64 {
		x := 0.0
		for _, id := range s.Tokens {
			x += float64(id % 5)
		}
		return x / 4
	})
	prompts := []Prompt{{ID: "t10 t11 t12 t13 t14", IDs: []int64{10, 11, 12, 13, 14}}, {ID: "t20 t21 t22 t23 t24", IDs: []int64{20, 21, 22, 23, 24}}}
	type row struct {
		Prompt   string    `json:"prompt"`
		IDs      []int64   `json:"prompt_ids"`
		Tokens   []int64   `json:"completion_ids"`
		LogProbs []float32 `json:"logprobs"`
	}
	type tcase struct {
		Config Config `json:"config"`
		Rows   []row  `json:"rows"`
	}
	ours := map[string]map[string]float64{}
	sent := map[string]tcase{}
	for name, edit := range cases {
		cfg := base
		edit(&cfg)
		cfg.OutputDir = filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
		var rows []row
		o := Options{EOS: []int64{1}, Pad: 1} // the peer's EOS and pad token
		o.Callbacks.OnStep = func(_ int, s []Scored) error {
			for _, c := range s {
				rows = append(rows, row{c.Prompt.ID, c.Prompt.IDs, c.Tokens, c.LogProbs})
			}
			return nil
		}
		tr, err := New(model, []Reward{reward}, prompts, cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		res, err := tr.Train(t.Context())
		tr.Close()
		if err != nil {
			t.Fatal(err)
		}
		ours[name] = res.Logs[0].Metrics()
		sent[name] = tcase{cfg.WithDefaults(), rows}
	}
	js, err := json.Marshal(sent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cases.json"), js, 0o644); err != nil {
		t.Fatal(err)
	}
	peer("step")
	var theirs struct {
		Cases map[string][]map[string]float64 `json:"cases"`
	}
	raw, err := os.ReadFile(filepath.Join(dir, "trl.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &theirs); err != nil {
		t.Fatal(err)
	}
	for name, m := range ours {
		updates := theirs.Cases[name]
		if len(updates) != base.NumIterations {
			t.Fatalf("%s: TRL logged %d updates, want %d", name, len(updates), base.NumIterations)
		}
		compared := 0
		for k, got := range m {
			if k == "epoch" { // TRL's is the fraction of an epoch done
				continue
			}
			var want float64
			n := 0
			for _, u := range updates {
				if v, ok := u[k]; ok {
					want, n = want+v, n+1
				}
			}
			if n == 0 {
				continue // tagpr's own (rewards/NAME/share…) or named by the reward
			}
			want /= float64(n) // tagpr logs the mean over the step's updates
			if k == "learning_rate" {
				want = updates[len(updates)-1][k] // and the last update's rate
			}
			compared++
			if math.Abs(got-want) > 1e-6+2e-4*math.Abs(want) {
				t.Errorf("%s: %s = %.7g, TRL %.7g (per update %v)", name, k, got, want, perUpdate(updates, k))
			}
		}
		if compared < 14 {
			t.Errorf("%s: only %d metrics compared", name, compared)
		}
	}
}

func perUpdate(updates []map[string]float64, k string) []float64 {
	var out []float64
	for _, u := range updates {
		out = append(out, u[k])
	}
	return out
}
