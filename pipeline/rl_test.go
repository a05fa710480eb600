package pipeline

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

func mustORT(t testing.TB) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatal(err)
	}
}

// Tiny verifiable task: the reward is the fraction of completion tokens equal
// to rlTarget. A random-init model emits it with probability ≈ 1/vocab.
const (
	rlVocab  = 32
	rlTarget = 7
	rlEOS    = 1
	rlPad    = 0
)

func tinyRLModel(t testing.TB) *onnxpb.ModelProto {
	t.Helper()
	m, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 4, KVHeads: 2, Vocab: rlVocab, MaxPositions: 64, Seed: 9})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func tinyRLPrompts(n int) []RLPrompt {
	rng := rand.New(rand.NewPCG(4, 2))
	out := make([]RLPrompt, n)
	for i := range out {
		ids := make([]int64, 3+rng.IntN(4))
		for j := range ids {
			ids[j] = 2 + rng.Int64N(rlVocab-2)
		}
		out[i] = RLPrompt{ID: fmt.Sprintf("p%02d", i), IDs: ids}
	}
	return out
}

// targetReward scores a completion by its share of rlTarget tokens (EOS
// included in the length, so stopping early is no trick).
type targetReward struct{}

func (targetReward) Components() []string { return []string{"target_frac"} }
func (targetReward) Describe() string     { return "fraction of target tokens" }
func (targetReward) Score(_ context.Context, s []RLSample) ([]RLScore, error) {
	out := make([]RLScore, len(s))
	for i, x := range s {
		hit := 0
		for _, id := range x.Tokens {
			if id == rlTarget {
				hit++
			}
		}
		f := float64(hit) / float64(max(1, len(x.Tokens)))
		out[i] = RLScore{Reward: f, Parts: []float64{f}}
	}
	return out, nil
}

func tinyRLStage() RLStage {
	return RLStage{Name: "target", Reward: RewardExploratory, Steps: 30, PromptsPerStep: 4, NumGenerations: 8,
		MaxCompletionLength: 8, LR: 1e-2, Warmup: 2, Clip: 1, Beta: 0.02, CheckpointEvery: 10, Seed: 3}
}

func tinyRLPolicy(t testing.TB) RLPolicy {
	return RLPolicy{Model: tinyRLModel(t), EOS: []int64{rlEOS}, Pad: rlPad}
}

// TestRLRaisesVerifiableReward: GRPO on a reward the model can only reach by
// changing its distribution. A wrong loss sign or advantage would drive the
// target share down instead of up.
func TestRLRaisesVerifiableReward(t *testing.T) {
	mustORT(t)
	var logs []RLStepLog
	res, err := TrainRL(context.Background(), tinyRLStage(), tinyRLPolicy(t), tinyRLPrompts(16), targetReward{}, t.TempDir(),
		RLHooks{Step: func(l RLStepLog, total int) { logs = append(logs, l) }})
	if err != nil {
		t.Fatal(err)
	}
	if len(logs) != 30 || res.Summary.Steps != 30 {
		t.Fatalf("%d step logs, summary %d steps", len(logs), res.Summary.Steps)
	}
	mean := func(ls []RLStepLog) float64 {
		s := 0.0
		for _, l := range ls {
			s += l.Reward.Mean
		}
		return s / float64(len(ls))
	}
	first, last := mean(logs[:5]), mean(logs[len(logs)-5:])
	var curve []string
	for _, l := range logs {
		curve = append(curve, fmt.Sprintf("%.2f", l.Reward.Mean))
	}
	t.Logf("mean reward by step: %s", strings.Join(curve, " "))
	t.Logf("first 5 steps %.3f, last 5 %.3f; summary %+v", first, last, res.Summary.End)
	if last < 0.5 || last < first+0.3 {
		t.Fatalf("mean reward went %.3f → %.3f; want ≥ 0.5 and up by ≥ 0.3", first, last)
	}
	// Old log-probs come from generation: at one iteration per batch the
	// ratio starts at 1, so nothing may be clipped on the first step…
	if logs[0].ClipFraction != 0 {
		t.Errorf("step 1 clip fraction %v: the generation log-probs do not line up with the training graph's", logs[0].ClipFraction)
	}
	// …and the policy equals its reference before the first update.
	if logs[0].KL == nil || math.Abs(*logs[0].KL) > 1e-6 {
		t.Errorf("step 1 KL %v, want ≈ 0", logs[0].KL)
	}
	if *logs[len(logs)-1].KL <= 1e-4 {
		t.Errorf("final KL %v: the policy moved, the KL to the start should be > 0", *logs[len(logs)-1].KL)
	}
}
