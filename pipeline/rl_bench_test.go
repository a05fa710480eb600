package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// BenchmarkRLStep times RL steps at the demo's size (4-layer d=128 llama,
// 16 rows of ≈ 300 prompt + 64 completion tokens, beta > 0) and splits them
// into generate / reference / forward-backward / optimizer. It compares the
// stage's sessions as TrainRL makes them (pool threads sleep after a run)
// with ORT's default of spinning threads: an RL step alternates three
// sessions, so one session's spinning pool can starve the next one's run.
func BenchmarkRLStep(b *testing.B) {
	mustORT(b)
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 4, DModel: 128, Heads: 4, KVHeads: 2, Vocab: 866, MaxPositions: 512, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	prompts := make([]RLPrompt, 16)
	for i := range prompts {
		ids := make([]int64, 260+rng.IntN(40))
		for j := range ids {
			ids[j] = 3 + rng.Int64N(860)
		}
		prompts[i] = RLPrompt{ID: fmt.Sprint(i), IDs: ids}
	}
	st := RLStage{Name: "bench", Reward: RewardExploratory, Steps: 3, PromptsPerStep: 4, NumGenerations: 4,
		MaxCompletionLength: 64, Beta: 0.04, LR: 1e-4, Seed: 1}
	run := func(o ort.Options) RLTimes {
		res, err := TrainRL(context.Background(), st, RLPolicy{Model: m, EOS: []int64{2}, Session: o}, prompts, targetReward{}, b.TempDir(), RLHooks{})
		if err != nil {
			b.Fatal(err)
		}
		t := res.Summary.Time
		n := float64(res.Summary.Steps)
		return RLTimes{Generate: t.Generate / n, Score: t.Score / n, Reference: t.Reference / n, ForwardBackward: t.ForwardBackward / n, Optimizer: t.Optimizer / n, Total: t.Total / n}
	}
	for i := 0; i < b.N; i++ {
		spin := run(ort.Options{ConfigEntries: map[string]string{spinKey: "1"}})
		sleep := run(ort.Options{})
		for _, x := range []struct {
			name string
			t    RLTimes
		}{{"spin", spin}, {"nospin", sleep}} {
			fmt.Printf("bench: rl_step_%s_total %.3f s\n", x.name, x.t.Total)
			fmt.Printf("bench: rl_step_%s_generate %.3f s\n", x.name, x.t.Generate)
			fmt.Printf("bench: rl_step_%s_reference %.3f s\n", x.name, x.t.Reference)
			fmt.Printf("bench: rl_step_%s_forward_backward %.3f s\n", x.name, x.t.ForwardBackward)
			fmt.Printf("bench: rl_step_%s_optimizer %.3f s\n", x.name, x.t.Optimizer)
		}
		b.ReportMetric(spin.Total/sleep.Total, "spin_vs_default")
		b.ReportMetric(sleep.ForwardBackward/sleep.Total, "fb_share")
	}
}
