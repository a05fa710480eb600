package grpo

import (
	"encoding/json"
	"math"
	"os"
	"testing"
)

// TestAdvantagesMatchTRL: Advantages gives TRL 1.16's advantages and
// zero-std fraction for each scale_rewards (testdata/trl_advantages.json,
// written by scripts/grpo/trl_parity.py). The loss that consumes them is
// checked against TRL in onnx/train's TestPolicyLossMatchesTRL.
func TestAdvantagesMatchTRL(t *testing.T) {
	var fx struct {
		G       int       `json:"G"`
		Rewards []float64 `json:"rewards"`
		Scales  map[string]struct {
			Advantages []float64 `json:"advantages"`
			ZeroStd    float64   `json:"frac_reward_zero_std"`
		} `json:"scales"`
	}
	raw, err := os.ReadFile("testdata/trl_advantages.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	if len(fx.Scales) != 3 {
		t.Fatalf("fixture has %d scale_rewards values, want 3", len(fx.Scales))
	}
	for scale, want := range fx.Scales {
		adv, zero, err := Advantages(fx.Rewards, fx.G, scale)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(zero-want.ZeroStd) > 1e-7 { // TRL's is a float32 mean

			t.Errorf("%s: zero-std fraction %v, TRL %v", scale, zero, want.ZeroStd)
		}
		for i, w := range want.Advantages {
			if math.Abs(adv[i]-w) > 1e-15*math.Max(1, math.Abs(w)) {
				t.Errorf("%s: advantage %d = %.17g, TRL %.17g", scale, i, adv[i], w)
			}
		}
	}
}

// TestStepMetricsMatchTRL: a step's metrics under TRL's names are what
// TRL 1.16's _generate_and_score_completions logs from the same scored
// completions: reward_std and rewards/NAME/std are nanstd's
// Bessel-corrected std (not the population std), frac_reward_zero_std the
// share of groups whose std is 0, completions/* the lengths and the share
// ended by max_completion_length.
func TestStepMetricsMatchTRL(t *testing.T) {
	length := Func("length", func(s Sample) float64 { return float64(len(s.Tokens)) })
	cfg := tinyConfig(t.TempDir())
	cfg.Steps, cfg.SaveSteps, cfg.RewardWeights = 1, 0, []float64{1, 0.25}
	var scored []Scored
	o := tinyOptions()
	o.Callbacks.OnStep = func(_ int, s []Scored) error { scored = s; return nil }
	res := run(t, cfg, tinyPrompts(4), o, targetShare, length)
	G := cfg.NumGenerations
	total, lens := make([]float64, len(scored)), make([]float64, len(scored))
	parts := [][]float64{make([]float64, len(scored)), make([]float64, len(scored))}
	clipped, zero := 0.0, 0.0
	for i, s := range scored {
		total[i], lens[i] = s.Reward, float64(len(s.Tokens))
		parts[0][i], parts[1][i] = s.Rewards[0], s.Rewards[1]
		if s.Finish == "length" {
			clipped++
		}
	}
	for g := 0; g < len(total); g += G {
		if stdUnbiased(total[g:g+G]) <= 1e-8 {
			zero++
		}
	}
	minLen, maxLen := lens[0], lens[0]
	for _, l := range lens {
		minLen, maxLen = math.Min(minLen, l), math.Max(maxLen, l)
	}
	// torch.std / TRL's nanstd: Σ(x−mean)² / (n−1).
	sampleStd := func(x []float64) float64 {
		m := meanOf(x)
		s := 0.0
		for _, v := range x {
			s += (v - m) * (v - m)
		}
		return math.Sqrt(s / float64(len(x)-1))
	}
	want := map[string]float64{
		"reward": meanOf(total), "reward_std": sampleStd(total),
		"rewards/target_share/mean": meanOf(parts[0]), "rewards/target_share/std": sampleStd(parts[0]),
		"rewards/length/mean": meanOf(parts[1]), "rewards/length/std": sampleStd(parts[1]),
		"frac_reward_zero_std":    zero / float64(len(total)/G),
		"completions/mean_length": meanOf(lens), "completions/min_length": minLen, "completions/max_length": maxLen,
		"completions/clipped_ratio": clipped / float64(len(total)),
	}
	got := res.Logs[0].Metrics()
	for k, w := range want {
		if g, ok := got[k]; !ok || math.Abs(g-w) > 1e-12*math.Max(1, math.Abs(w)) {
			t.Errorf("%s = %v, TRL logs %v", k, g, w)
		}
	}
}
