package rewardmodel

import (
	"context"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
)

// BenchmarkPRMU measures what PRMU adds to an RL step: scoring 64 responses
// (8 prompts × 8 completions) against the time to tokenize them alone, and
// one training step of 32 pairs (64 rows) against scoring 64 rows.
func BenchmarkPRMU(b *testing.B) {
	ctx := context.Background()
	cfg := datasets.DefaultSynthConfig()
	cfg.Users = 200
	data, err := datasets.Synth(cfg)
	if err != nil {
		b.Fatal(err)
	}
	const steps = 100
	p, res, _, err := TrainSynthPRMU(ctx, data, PRMURecipe{Train: PRMUTrainOptions{Steps: steps, PairsPerStep: 32, Seed: 1}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	pairs, err := SynthPRMUPairs(data, "dev", 0, 1)
	if err != nil {
		b.Fatal(err)
	}
	var profiles [][]string
	var responses []string
	for i := 0; len(responses) < 64; i++ {
		q := pairs[(i/8)*29%len(pairs)]
		profiles = append(profiles, q.Profile)
		responses = append(responses, q.Chosen)
	}
	best := func(fn func()) time.Duration {
		m := time.Duration(1 << 62)
		for range 20 {
			t0 := time.Now()
			fn()
			m = min(m, time.Since(t0))
		}
		return m
	}
	for range b.N {
		tScore := best(func() {
			if _, err := p.Score(ctx, profiles, responses); err != nil {
				b.Fatal(err)
			}
		})
		tTok := best(func() {
			enc := &prmuEncoder{tok: p.tok, seen: map[string][]int64{}}
			for i := range responses {
				for _, it := range profiles[i] {
					enc.encode(it, p.Config.MaxItemTokens)
				}
				enc.encode(responses[i], p.Config.MaxResponseTokens)
			}
		})
		step := res.Duration / steps // includes deriving the graph once: an upper bound
		b.ReportMetric(float64(tScore.Microseconds())/1000, "score64_ms")
		b.ReportMetric(tScore.Seconds()/tTok.Seconds(), "score_over_tokenize")
		b.ReportMetric(float64(step.Microseconds())/1000, "train_step_ms")
		b.ReportMetric(step.Seconds()/tScore.Seconds(), "trainstep_over_score64")
	}
}
