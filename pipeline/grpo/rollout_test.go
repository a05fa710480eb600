package grpo

import (
	"context"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/pipeline/grpo/grpotest"
)

// solvedPrompts is a reward that is target_share on the odd prompts and 1
// on the even ones, whatever the completion: the even prompts' groups are
// all equal and carry no learning signal, as prompts the policy always
// solves do.
var solvedPrompts = Func("solved_or_share", func(s Sample) float64 {
	if s.Prompt.ID[len(s.Prompt.ID)-1]%2 == 0 {
		return 1
	}
	return grpotest.TargetShare(s.Tokens)
})

// TestDynamicSampling: with dynamic_sampling_rounds the groups trained on
// are those with unequal rewards, drawn again in place of the equal ones,
// the batch keeps its shape, and the log says what was sampled; without it
// about half the groups are equal.
func TestDynamicSampling(t *testing.T) {
	trained := func(rounds int) (zeroTrained, zeroSampled float64, groups int) {
		cfg := tinyConfig(t.TempDir())
		cfg.Steps, cfg.DynamicSamplingRounds = 10, rounds
		o := tinyOptions()
		o.Callbacks.OnStep = func(step int, scored []Scored) error {
			if len(scored) != cfg.PromptsPerStep*cfg.NumGenerations {
				t.Fatalf("step %d trained on %d completions, want %d", step, len(scored), cfg.PromptsPerStep*cfg.NumGenerations)
			}
			for g := 0; g < len(scored); g += cfg.NumGenerations {
				for _, s := range scored[g : g+cfg.NumGenerations] {
					if s.Prompt != scored[g].Prompt {
						t.Fatalf("step %d: group %d mixes prompts %s and %s", step, g/cfg.NumGenerations, s.Prompt.ID, scored[g].Prompt.ID)
					}
				}
			}
			groups += len(scored) / cfg.NumGenerations
			return nil
		}
		res := run(t, cfg, tinyPrompts(16), o, solvedPrompts)
		for _, l := range res.Logs {
			zeroTrained += l.ZeroStdFraction / float64(len(res.Logs))
			switch d := l.DynamicSampling; {
			case rounds == 0 && d != nil:
				t.Fatalf("step %d logs dynamic sampling %+v with it off", l.Step, d)
			case rounds > 0 && (d == nil || d.Rounds > rounds || d.Groups < cfg.PromptsPerStep):
				t.Fatalf("step %d: dynamic sampling log %+v (rounds ≤ %d)", l.Step, d, rounds)
			case rounds > 0:
				zeroSampled += d.ZeroStdFraction / float64(len(res.Logs))
				if got := l.Metrics()["dynamic_sampling/frac_reward_zero_std"]; got != d.ZeroStdFraction {
					t.Fatalf("step %d metric dynamic_sampling/frac_reward_zero_std %v, log %v", l.Step, got, d.ZeroStdFraction)
				}
			}
		}
		return zeroTrained, zeroSampled, groups
	}
	off, _, _ := trained(0)
	on, sampled, groups := trained(3)
	t.Logf("frac_reward_zero_std of the groups trained on: %.3f off, %.3f with 3 rounds (%.3f of the groups sampled)", off, on, sampled)
	if off < 0.3 || sampled < 0.3 {
		t.Fatalf("half the prompts are solved, yet %.3f (off) and %.3f (sampled) of the groups were equal", off, sampled)
	}
	// Half the draws are solved prompts: 3 rounds leave ≈ 1/16 of the
	// groups equal, plus the odd prompts' groups the policy has learnt to
	// solve every time.
	if on > off/3 {
		t.Fatalf("with dynamic sampling %.3f of the groups trained on are equal, want under a third of %.3f (off)", on, off)
	}
	if groups != 10*4 {
		t.Fatalf("%d groups trained on, want 40", groups)
	}
}

// TestDynamicSamplingResumes: a run with dynamic sampling stopped after a
// step resumes to the weights of an uninterrupted one, and one with another
// dynamic_sampling_rounds is refused.
func TestDynamicSamplingResumes(t *testing.T) {
	cfg := tinyConfig(t.TempDir())
	cfg.Steps, cfg.SaveSteps, cfg.DynamicSamplingRounds = 4, 1, 2
	prompts := tinyPrompts(8)
	want := run(t, cfg, prompts, tinyOptions(), solvedPrompts)

	cfg.OutputDir = t.TempDir()
	trainOnce := func(ctx context.Context, cfg Config, o Options) error {
		return trainTo(ctx, t, cfg, prompts, o, solvedPrompts)
	}
	interruptAfter(t, 2, cfg, prompts, tinyOptions(), solvedPrompts)
	other := cfg
	other.DynamicSamplingRounds = 1
	if err := trainOnce(context.Background(), other, tinyOptions()); err == nil || !strings.Contains(err.Error(), "dynamic_sampling_rounds") {
		t.Fatalf("resume with other dynamic_sampling_rounds: %v", err)
	}
	sameWeights(t, want, run(t, cfg, prompts, tinyOptions(), solvedPrompts))
}
