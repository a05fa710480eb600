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
