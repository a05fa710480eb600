package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// TestRLResumeRefusesAnotherPRMU: a guided stage records the PRMU it
// scores with (its SHA256), so a rerun after prmu/ was replaced by another
// PRMU is refused, naming the reward, instead of finishing the stage on
// another reward model; the same PRMU, loaded again, resumes.
func TestRLResumeRefusesAnotherPRMU(t *testing.T) {
	mustORT(t)
	ctx := context.Background()
	data, sets, _ := synthTagTrain(t)
	quiet := RLPolicy{}.Session
	quiet.IntraOpThreads = 1
	tmp := t.TempDir()
	load := func(seed uint64) *rewardmodel.PRMU {
		dir := filepath.Join(tmp, fmt.Sprintf("prmu%d", seed))
		r := rewardmodel.PRMURecipe{TopK: 4, Config: rewardmodel.PRMUConfig{Seed: seed},
			Train: rewardmodel.PRMUTrainOptions{Steps: 5, PairsPerStep: 8, Seed: seed, Session: quiet}}
		p, _, _, err := rewardmodel.TrainPRMUOnSets(ctx, sets, nil, r)
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Save(dir); err != nil {
			t.Fatal(err)
		}
		p.Close()
		if p, err = rewardmodel.LoadPRMU(dir, quiet); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	set := data.Set(datasets.SynthTag, "train")
	prompts := tinyRLPrompts(4)
	for i := range prompts {
		e := &set.Examples[i]
		prompts[i].Kind, prompts[i].Gold = rewardmodel.Classification, e.Output
		prompts[i].Profile = []string{rewardmodel.ProfileItemText(set.Task, &e.Profile[0])}
	}
	pol := tinyRLPolicy(t)
	pol.Detokenize = func(ids []int64) (string, error) {
		return "<think>\n<conclude>comedy</conclude>\n</think>\n<answer>comedy</answer>", nil
	}
	st := tinyRLStage()
	st.Name, st.Reward, st.Weights, st.Rewards, st.Steps, st.PromptsPerStep, st.NumGenerations, st.CheckpointEvery = "guided", RewardGuided, rewardmodel.DefaultWeights(), nil, 3, 2, 2, 1
	dir := filepath.Join(tmp, "rl")
	a, b := load(1), load(2)
	cctx, cancel := context.WithCancel(ctx)
	_, err := TrainRL(cctx, st, pol, prompts, TagPRRewards(rewardmodel.DefaultTaxonomy(), a), dir, func(p train.Progress) {
		if p.Step == 1 && p.Note == "" {
			cancel() // Ctrl-C after step 1
		}
	})
	if err != context.Canceled {
		t.Fatalf("first run: %v, want context.Canceled", err)
	}
	_, err = TrainRL(ctx, st, pol, prompts, TagPRRewards(rewardmodel.DefaultTaxonomy(), b), dir, nil)
	if err == nil || !strings.Contains(err.Error(), "reward.prmu.sha256") {
		t.Fatalf("resumed with another PRMU: %v, want a refusal naming reward.prmu.sha256", err)
	}
	if _, err := TrainRL(ctx, st, pol, prompts, TagPRRewards(rewardmodel.DefaultTaxonomy(), load(1)), dir, nil); err != nil {
		t.Fatalf("resumed with the same PRMU trained again: %v", err)
	}
}
