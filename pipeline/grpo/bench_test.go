package grpo

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// BenchmarkRLStep times GRPO steps at the demo's size (4-layer d=128 llama,
// 16 rows of ≈ 300 prompt + 64 completion tokens, beta > 0) and splits them
// into generate / reference / forward-backward / optimizer. It compares the
// run's sessions as New makes them (pool threads sleep after a run) with
// ORT's default of spinning threads: a step alternates three sessions, so
// one session's spinning pool can starve the next one's run.
func BenchmarkRLStep(b *testing.B) {
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 4, DModel: 128, Heads: 4, KVHeads: 2, Vocab: 866, MaxPositions: 512, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	prompts := make([]Prompt, 16)
	for i := range prompts {
		ids := make([]int64, 260+rng.IntN(40))
		for j := range ids {
			ids[j] = 3 + rng.Int64N(860)
		}
		prompts[i] = Prompt{ID: fmt.Sprint(i), IDs: ids}
	}
	cfg := Config{Steps: 3, PromptsPerStep: 4, NumGenerations: 4, MaxCompletionLength: 64, Beta: 0.04, LearningRate: 1e-4, Seed: 1}
	perStep := func(o ort.Options) Times {
		cfg.OutputDir = b.TempDir()
		tr, err := New(m, []Reward{targetShare}, prompts, cfg, Options{EOS: []int64{2}, Session: o})
		if err != nil {
			b.Fatal(err)
		}
		defer tr.Close()
		res, err := tr.Train(b.Context())
		if err != nil {
			b.Fatal(err)
		}
		var t Times
		n := float64(len(res.Logs))
		for _, l := range res.Logs {
			s := l.Seconds
			t.Generate += s.Generate / n
			t.Reference += s.Reference / n
			t.ForwardBackward += s.ForwardBackward / n
			t.Optimizer += s.Optimizer / n
			t.Total += s.Total / n
		}
		return t
	}
	for i := 0; i < b.N; i++ {
		spin := perStep(ort.Options{ConfigEntries: map[string]string{ort.SpinKey: "1"}})
		sleep := perStep(ort.Options{})
		for _, x := range []struct {
			name string
			t    Times
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
