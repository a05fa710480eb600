package pipeline

import (
	"context"
	"fmt"
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

// TestGuidedStageWithEachPRMUEncoder runs a tiny guided stage with a PRMU
// on each text encoder: the bag of tokens, a frozen encoder and a
// LoRA-tuned one. R_PRMU is logged, PRMU's part of the step time is logged,
// and a step's answers reach PRMU in one call: at most one encoder run per
// step, and a frozen encoder embeds each profile item once over the stage.
func TestGuidedStageWithEachPRMUEncoder(t *testing.T) {
	mustORT(t)
	ctx := context.Background()
	data, sets, queriesPerUser := synthTagTrain(t)
	set := data.Set(datasets.SynthTag, "train")
	labels := set.Task.Labels
	prompts := tinyRLPrompts(8)
	items := map[string]bool{}
	for i := range prompts {
		e := &set.Examples[i*queriesPerUser] // one example per user
		prompts[i].Kind, prompts[i].Gold = rewardmodel.Classification, e.Output
		for _, idx := range datasets.TopKBM25(set.Task, e, 4) {
			it := rewardmodel.ProfileItemText(set.Task, &e.Profile[idx])
			prompts[i].Profile = append(prompts[i].Profile, it)
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
				if runs > st.Steps || texts > len(items)+len(labels) {
					t.Fatalf("%s; want at most one run per step, each profile item and answer encoded at most once", msg)
				}
			}
			t.Log(msg)
			if !strings.Contains(res.Summary.Scorer, "0.5·prmu") || res.Summary.Time.Rewards[RewardPRMU] == 0 {
				t.Fatalf("summary: %s, times %+v", res.Summary.Scorer, res.Summary.Time)
			}
		})
	}
}
