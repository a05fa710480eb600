package rewardmodel

import (
	"context"
	"sync"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ort"
)

// trainedPRMU is one PRMU trained on a small synthetic benchmark, shared by
// the tests (training is the slow part).
var trainedPRMU struct {
	once  sync.Once
	p     *PRMU
	res   PRMUTrainResult
	data  *datasets.SynthData
	train []PRMUPair
	err   error
}

func sharedPRMU(t *testing.T) (*PRMU, PRMUTrainResult, *datasets.SynthData) {
	t.Helper()
	if err := ort.Init(""); err != nil {
		t.Fatalf("ONNX Runtime is needed (make setup): %v", err)
	}
	s := &trainedPRMU
	s.once.Do(func() {
		cfg := datasets.DefaultSynthConfig()
		cfg.Users = 600
		s.data, s.err = datasets.Synth(cfg)
		if s.err != nil {
			return
		}
		s.train, s.err = SynthPRMUPairs(s.data, "train", 1)
		if s.err != nil {
			return
		}
		tok, err := TrainPRMUTokenizer(s.train, 512)
		if err != nil {
			s.err = err
			return
		}
		s.p, s.res, s.err = TrainPRMU(context.Background(), PRMUConfig{Seed: 1}, tok, s.train, PRMUTrainOptions{Steps: 1000, Seed: 1})
	})
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.p, s.res, s.data
}

func TestPRMULearnsUsersPreferences(t *testing.T) {
	p, res, data := sharedPRMU(t)
	n := len(res.Losses)
	first, last := meanOf(res.Losses[:20]), meanOf(res.Losses[n-20:])
	t.Logf("trained %d steps in %v: loss %.3f → %.3f, train pair accuracy %.2f → %.2f, %d skipped",
		n, res.Duration.Round(1e6), first, last, meanOf(res.Accuracies[:20]), meanOf(res.Accuracies[n-20:]), res.Skipped)
	if !(last < 0.6*first) || res.Skipped > 0 {
		t.Fatalf("training loss %.3f → %.3f (%d steps skipped): want it to fall below 60%%", first, last, res.Skipped)
	}
	// Dev users are unseen in training: only their profiles tell them apart.
	want := map[string]float64{datasets.SynthTag: 0.9, datasets.SynthRate: 0.6, datasets.SynthGen: 0.9}
	for _, task := range data.Config.Tasks {
		set := data.Set(task, "dev")
		pairs, err := PRMUPairs(set.Task, set.Examples, 0, 7)
		if err != nil {
			t.Fatal(err)
		}
		acc, err := p.PairAccuracy(context.Background(), pairs)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s dev pair accuracy %.3f on %d pairs", task, acc, len(pairs))
		if acc < want[task] {
			t.Errorf("%s dev pair accuracy %.3f, want >= %.2f", task, acc, want[task])
		}
	}
}

func meanOf(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}
