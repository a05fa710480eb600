package pipeline

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/rewardmodel"
)

// encoderFixture is rewardmodel's tiny random BERT exported by Optimum.
const encoderFixture = "../rewardmodel/testdata/encoder"

// synthTagTrain is the PRMU RL tests' data: the synthetic tagging task for
// 40 users, its train sets for PRMU, and the questions each user has.
func synthTagTrain(t *testing.T) (*datasets.SynthData, []rewardmodel.ExampleSet, int) {
	t.Helper()
	sc := datasets.DefaultSynthConfig()
	sc.Users, sc.Tasks = 40, []string{datasets.SynthTag}
	data, err := datasets.Synth(sc)
	if err != nil {
		t.Fatal(err)
	}
	sets, err := rewardmodel.SynthSets(data, "train")
	if err != nil {
		t.Fatal(err)
	}
	return data, sets, sc.QueriesPerUser
}

// guidedPrompts are n tiny RL prompts, one per user of the synthetic
// tagging task, each with its first example's gold and its 4 profile items
// BM25 ranks first for it.
func guidedPrompts(data *datasets.SynthData, queriesPerUser, n int) []RLPrompt {
	set := data.Set(datasets.SynthTag, "train")
	prompts := tinyRLPrompts(n)
	for i := range prompts {
		e := &set.Examples[i*queriesPerUser] // one example per user
		prompts[i].Kind, prompts[i].Gold = rewardmodel.Classification, e.Output
		for _, idx := range datasets.TopKBM25(set.Task, e, 4) {
			prompts[i].Profile = append(prompts[i].Profile, rewardmodel.ProfileItemText(set.Task, &e.Profile[idx]))
		}
	}
	return prompts
}

// TestGuidedStageWithEachPRMUEncoder runs a tiny guided stage with a PRMU
// on each text encoder: the bag of tokens, a frozen encoder and a
// LoRA-tuned one. R_PRMU is logged, PRMU's part of the step time is logged,
// and a step's answers reach PRMU in one call: a frozen encoder embeds each
// profile item and answer once over the stage, each in a run of its own.
func TestGuidedStageWithEachPRMUEncoder(t *testing.T) {
	mustORT(t)
	ctx := context.Background()
	data, sets, queriesPerUser := synthTagTrain(t)
	labels := data.Set(datasets.SynthTag, "train").Task.Labels
	prompts := guidedPrompts(data, queriesPerUser, 8)
	items := map[string]bool{}
	for _, p := range prompts {
		for _, it := range p.Profile {
			items[it] = true
		}
	}
	// The completion's first token picks the answer, so every completion
	// has a well-formed one for PRMU to score.
	detok := func(ids []int64) (string, error) {
		if len(ids) == 0 {
			return "", nil
		}
		a := labels[int(ids[0])%len(labels)]
		return fmt.Sprintf("<think>\n<infer_preference>the user likes %s</infer_preference>\n<conclude>%s</conclude>\n</think>\n<answer>%s</answer>", a, a, a), nil
	}
	quiet := RLPolicy{}.Session
	quiet.IntraOpThreads = 1
	recipe := rewardmodel.PRMURecipe{TopK: 4, Train: rewardmodel.PRMUTrainOptions{Steps: 20, PairsPerStep: 8, Seed: 1, Session: quiet}}
	for _, tuning := range []string{"", rewardmodel.TuneFrozen, rewardmodel.TuneLoRA} {
		r := recipe
		name := "bag"
		if tuning != "" {
			r.Config.Encoder, name = &rewardmodel.PRMUEncoder{Dir: encoderFixture, Tuning: tuning}, tuning
			if tuning == rewardmodel.TuneLoRA {
				r.Train.Steps = 3
			}
		}
		t.Run(name, func(t *testing.T) {
			p, _, _, err := rewardmodel.TrainPRMUOnSets(ctx, sets, nil, r)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			var before rewardmodel.EncoderStats
			if p.Encoder() != nil {
				before = p.Encoder().Stats()
			}
			st := tinyRLStage()
			st.Name, st.Reward, st.Weights, st.Rewards, st.Steps, st.PromptsPerStep, st.NumGenerations, st.CheckpointEvery = "guided", RewardGuided, rewardmodel.DefaultWeights(), nil, 3, 4, 4, 0
			pol := tinyRLPolicy(t)
			pol.Detokenize = detok
			dir := filepath.Join(t.TempDir(), "rl")
			res, err := TrainRL(ctx, st, pol, prompts, TagPRRewards(rewardmodel.DefaultTaxonomy(), p), dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			logs, err := train.ReadLog[RLStepLog](filepath.Join(dir, rlCheckpointDir, grpo.LogFile))
			if err != nil {
				t.Fatal(err)
			}
			if len(logs) != st.Steps {
				t.Fatalf("%d step logs", len(logs))
			}
			for _, l := range logs {
				rp, ok := l.Rewards[RewardPRMU]
				if prmu := l.Seconds.Rewards[RewardPRMU]; !ok || !(rp.Mean > 0 && rp.Mean < 1) || !(prmu > 0 && prmu <= l.Seconds.Score) {
					t.Fatalf("step %d: prmu %+v (logged %v), PRMU %.4fs of score %.4fs", l.Step, rp, ok, prmu, l.Seconds.Score)
				}
			}
			share := 0.0
			for _, l := range logs {
				share += l.Seconds.Rewards[RewardPRMU] / l.Seconds.Total / float64(len(logs))
			}
			msg := fmt.Sprintf("%s: prmu %.3f, PRMU %.1f%% of the step time", name, logs[len(logs)-1].Rewards[RewardPRMU].Mean, 100*share)
			if e := p.Encoder(); e != nil {
				d := e.Stats()
				runs, texts := d.Runs-before.Runs, d.Texts-before.Texts
				msg += fmt.Sprintf("; encoder: %d runs, %d texts over %d steps (%d distinct profile items, %d labels)", runs, texts, st.Steps, len(items), len(labels))
				if runs != texts || texts > len(items)+len(labels) {
					t.Fatalf("%s; want each profile item and answer encoded at most once, each in a run of its own", msg)
				}
			}
			t.Log(msg)
			if !strings.Contains(res.Summary.Scorer, "0.5·prmu") || res.Summary.Time.Rewards[RewardPRMU] == 0 {
				t.Fatalf("summary: %s, times %+v", res.Summary.Scorer, res.Summary.Time)
			}
		})
	}
}

// TestGuidedStageWithTextEncoderResumesBitForBit: a guided stage scored by a
// frozen text encoder's PRMU, stopped after step 1 and resumed, ends with the
// uninterrupted run's weights bit for bit. The resumed run's cache has lost
// the texts step 1 encoded, so it encodes them again, with other texts: an
// embedding that depended on its batch (padding) moved by ~1e-6 and the
// weights with it.
func TestGuidedStageWithTextEncoderResumesBitForBit(t *testing.T) {
	mustORT(t)
	ctx := context.Background()
	data, sets, queriesPerUser := synthTagTrain(t)
	labels := data.Set(datasets.SynthTag, "train").Task.Labels
	prompts := guidedPrompts(data, queriesPerUser, 8)
	// Answers (what PRMU reads) the training pairs never had, of several
	// lengths, so a batch of them is padded.
	detok := func(ids []int64) (string, error) {
		if len(ids) == 0 {
			return "", nil
		}
		a := labels[int(ids[0])%len(labels)] + strings.Repeat(" surely and truly", 1+6*(int(ids[len(ids)-1])%4))
		return fmt.Sprintf("<think>\n<infer_preference>the user likes %s</infer_preference>\n<conclude>%s</conclude>\n</think>\n<answer>%s</answer>", a, a, a), nil
	}
	quiet := RLPolicy{}.Session
	quiet.IntraOpThreads = 1
	r := rewardmodel.PRMURecipe{TopK: 4, Config: rewardmodel.PRMUConfig{Encoder: &rewardmodel.PRMUEncoder{Dir: encoderFixture, Tuning: rewardmodel.TuneFrozen}},
		Train: rewardmodel.PRMUTrainOptions{Steps: 20, PairsPerStep: 8, Seed: 1, Session: quiet}}
	p, _, _, err := rewardmodel.TrainPRMUOnSets(ctx, sets, nil, r)
	if err != nil {
		t.Fatal(err)
	}
	prmuDir := filepath.Join(t.TempDir(), "prmu")
	if err := p.Save(prmuDir); err != nil {
		t.Fatal(err)
	}
	p.Close()
	st := tinyRLStage()
	st.Name, st.Reward, st.Weights, st.Rewards, st.Steps, st.PromptsPerStep, st.NumGenerations, st.CheckpointEvery = "guided", RewardGuided, rewardmodel.DefaultWeights(), nil, 3, 4, 4, 1
	run := func(dir string, stopAfter int) *RLResult {
		// A fresh load per process, as a rerun of the command makes.
		p, err := rewardmodel.LoadPRMU(prmuDir, quiet)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		pol := tinyRLPolicy(t)
		pol.Detokenize = detok
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		res, err := TrainRL(cctx, st, pol, prompts, TagPRRewards(rewardmodel.DefaultTaxonomy(), p), dir, func(pr train.Progress) {
			if stopAfter > 0 && pr.Step == stopAfter && pr.Note == "" {
				cancel()
			}
		})
		if stopAfter > 0 {
			if err != context.Canceled {
				t.Fatalf("interrupted run: %v, want context.Canceled", err)
			}
			return nil
		}
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	wholeDir := filepath.Join(t.TempDir(), "rl")
	whole := run(wholeDir, 0)
	dir := filepath.Join(t.TempDir(), "rl")
	run(dir, 1)
	resumed := run(dir, 0)
	// The rewards first: R_PRMU of every step to the last bit.
	logs := func(dir string) []RLStepLog {
		l, err := train.ReadLog[RLStepLog](filepath.Join(dir, rlCheckpointDir, grpo.LogFile))
		if err != nil || len(l) != st.Steps {
			t.Fatalf("%s: %d step logs, %v", dir, len(l), err)
		}
		return l
	}
	wl, rl := logs(wholeDir), logs(dir)
	for i := range wl {
		w, r := wl[i].Rewards[RewardPRMU], rl[i].Rewards[RewardPRMU]
		if math.Float64bits(w.Mean) != math.Float64bits(r.Mean) || math.Float64bits(w.Std) != math.Float64bits(r.Std) {
			t.Fatalf("step %d: R_PRMU mean %v std %v resumed, %v %v uninterrupted", wl[i].Step, r.Mean, r.Std, w.Mean, w.Std)
		}
	}
	if len(whole.Weights) == 0 || len(resumed.Weights) != len(whole.Weights) {
		t.Fatalf("%d and %d weights", len(whole.Weights), len(resumed.Weights))
	}
	for name, w := range whole.Weights {
		got := resumed.Weights[name]
		for i := range w {
			if math.Float32bits(got[i]) != math.Float32bits(w[i]) {
				t.Fatalf("weight %s[%d]: resumed %v, uninterrupted %v", name, i, got[i], w[i])
			}
		}
	}
}
