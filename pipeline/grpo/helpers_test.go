package grpo

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/pipeline/grpo/grpotest"
)

func init() {
	// Tests run real ONNX Runtime: fail loudly when it is missing.
	if err := ort.Init(""); err != nil {
		panic("pipeline/grpo tests need ONNX Runtime (run `make setup`): " + err.Error())
	}
}

// The tiny verifiable task of grpotest.
const (
	eos = grpotest.EOS
	pad = grpotest.Pad
)

var targetShare = Func("target_share", func(s Sample) float64 { return grpotest.TargetShare(s.Tokens) })

func tinyModel(t testing.TB) *onnxpb.ModelProto { return grpotest.Model(t) }

func tinyPrompts(n int) []Prompt {
	out := make([]Prompt, n)
	for i, ids := range grpotest.Prompts(n) {
		out[i] = Prompt{ID: fmt.Sprintf("p%02d", i), IDs: ids}
	}
	return out
}

func tinyConfig(dir string) Config {
	off := false
	return Config{NumGenerations: 8, MaxCompletionLength: 8, Steps: 30, PromptsPerStep: 4, LearningRate: 1e-2,
		WarmupSteps: 2, MaxGradNorm: 1, Beta: 0.02, UseBiasCorrectionKL: &off, SaveSteps: 10, Seed: 3, OutputDir: dir}
}

func tinyOptions() Options { return Options{EOS: []int64{eos}, Pad: pad} }

// run trains a tiny run to its end.
func run(t testing.TB, cfg Config, prompts []Prompt, o Options, rewards ...Reward) *Result {
	t.Helper()
	if len(rewards) == 0 {
		rewards = []Reward{targetShare}
	}
	tr, err := New(tinyModel(t), rewards, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	res, err := tr.Train(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// trainTo runs (or resumes) a run of the tiny model until it ends or ctx
// is cancelled.
func trainTo(ctx context.Context, t testing.TB, cfg Config, prompts []Prompt, o Options, rewards ...Reward) error {
	t.Helper()
	tr, err := New(tinyModel(t), rewards, prompts, cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, err = tr.Train(ctx)
	return err
}

// interruptAfter trains until step n is done and stops there as Ctrl-C
// does (the run must return context.Canceled): a resume test's first run.
// o's own OnStep still hears every step.
func interruptAfter(t testing.TB, n int, cfg Config, prompts []Prompt, o Options, rewards ...Reward) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	next := o.Callbacks.OnStep
	o.Callbacks.OnStep = func(step int, s []Scored) error {
		if step == n {
			cancel()
		}
		if next != nil {
			return next(step, s)
		}
		return nil
	}
	if err := trainTo(ctx, t, cfg, prompts, o, rewards...); err != context.Canceled {
		t.Fatalf("run stopped after step %d: %v, want context.Canceled", n, err)
	}
}

// meanReward is the mean of the steps' mean rewards.
func meanReward(ls []StepLog) float64 {
	s := 0.0
	for _, l := range ls {
		s += l.Reward.Mean
	}
	return s / float64(len(ls))
}

// sameWeights fails unless two runs ended with the same weights bit for bit.
func sameWeights(t testing.TB, want, got *Result) {
	t.Helper()
	for name, w := range want.Weights {
		g := got.Weights[name]
		for i := range w {
			if math.Float32bits(w[i]) != math.Float32bits(g[i]) {
				t.Fatalf("weight %s[%d]: resumed %v, uninterrupted %v", name, i, g[i], w[i])
			}
		}
	}
}

func mustMarshal(t testing.TB, m *onnxpb.ModelProto) []byte {
	t.Helper()
	b, err := ir.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
