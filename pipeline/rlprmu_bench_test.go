package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/pipeline/grpo"
	"github.com/tagpr/tagpr/rewardmodel"
)

// BenchmarkPRMUInRLStep times PRMU scoring of an RL step's 64 responses
// (8 prompts × 8 completions, 64 new tokens each, sampled from the demo's
// 4-layer d=128 policy), each scored against its user's 32-item profile by
// the guided stage's prmu reward (as a step calls it), next to the
// policy's generation time for the same step. Step 1 is cold (the users'
// profile items are new to PRMU); steps 2 and 3 are cached (the items are in
// its embedding cache; the responses are new text every step). Encoders: the
// bag of tokens and the fixture BERT (frozen; a LoRA-tuned encoder of the
// same shape scores at the same cost).
func BenchmarkPRMUInRLStep(b *testing.B) {
	mustORT(b)
	ctx := context.Background()
	sc := datasets.DefaultSynthConfig()
	sc.Users, sc.ProfileMin, sc.ProfileMax, sc.Tasks = 100, 32, 32, []string{datasets.SynthGen}
	data, err := datasets.Synth(sc)
	if err != nil {
		b.Fatal(err)
	}
	sets, err := rewardmodel.SynthSets(data, "train")
	if err != nil {
		b.Fatal(err)
	}
	policy, err := lm.Build(lm.Config{Arch: lm.Llama, Layers: 4, DModel: 128, Heads: 4, KVHeads: 2, Vocab: 866, MaxPositions: 512, Seed: 7})
	if err != nil {
		b.Fatal(err)
	}
	// 8 dev users (unseen by PRMU's training), one prompt each.
	dev := data.Set(datasets.SynthGen, "dev")
	rng := rand.New(rand.NewPCG(1, 1))
	prompts := make([]RLPrompt, 8)
	for i := range prompts {
		e := &dev.Examples[i*sc.QueriesPerUser]
		ids := make([]int64, 260+rng.IntN(40))
		for j := range ids {
			ids[j] = 3 + rng.Int64N(860)
		}
		prompts[i] = RLPrompt{ID: e.ID, IDs: ids, Kind: rewardmodel.Generation, Gold: e.Output}
		for k := range e.Profile {
			prompts[i].Profile = append(prompts[i].Profile, rewardmodel.ProfileItemText(dev.Task, &e.Profile[k]))
		}
	}
	// Every completion becomes a well-formed answer of five words picked by
	// its tokens: new text every step, as a policy's answers are.
	words := strings.Fields("wow breaking update hey look so mayor team river school market bridge festival museum storm train library garden concert park opened closed changed moved won helped indeed folks again now honestly finally")
	detok := func(ids []int64) (string, error) {
		var ans []string
		for _, id := range ids[:min(5, len(ids))] {
			ans = append(ans, words[int(id)%len(words)])
		}
		a := strings.Join(ans, " ")
		return "<think>\n<draft>" + a + "</draft>\n<conclude>" + a + "</conclude>\n</think>\n<answer>" + a + "</answer>", nil
	}
	raw, err := ir.Marshal(policy)
	if err != nil {
		b.Fatal(err)
	}
	gen, err := lm.LoadBytes(raw, "bench policy", lm.LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer gen.Close()
	ids := make([][]int64, len(prompts))
	for i, p := range prompts {
		ids[i] = p.IDs
	}
	pad := int64(0)
	// step generates one step's completions and scores them.
	step := func(scorer grpo.Reward, seed uint64) (generate, prmu float64) {
		t0 := time.Now()
		comps, _, err := gen.Generate(ctx, ids, lm.GenerateOptions{MaxNewTokens: 64, NumGenerations: 8,
			Sampling: lm.Sampling{Temperature: 1}, Seed: seed, EOS: []int64{2}, Pad: &pad})
		if err != nil {
			b.Fatal(err)
		}
		generate = time.Since(t0).Seconds()
		samples := make([]grpo.Sample, len(comps))
		for i, c := range comps {
			samples[i] = grpo.Sample{Prompt: &grpo.Prompt{ID: prompts[i/8].ID, Meta: &prompts[i/8]}, Tokens: c.Tokens, Finish: c.Finish}
			samples[i].Text, _ = detok(c.Tokens)
		}
		t1 := time.Now()
		if _, err := scorer.Score(ctx, samples); err != nil {
			b.Fatal(err)
		}
		return generate, time.Since(t1).Seconds()
	}
	for i := 0; i < b.N; i++ {
		for _, enc := range []struct{ name, dir string }{{"bag", ""}, {"encoder", encoderFixture}} {
			r := rewardmodel.PRMURecipe{Config: rewardmodel.PRMUConfig{MaxItems: 32}, Train: rewardmodel.PRMUTrainOptions{Steps: 10, PairsPerStep: 8, Seed: 1}}
			if enc.dir != "" {
				r.Config.Encoder = &rewardmodel.PRMUEncoder{Dir: enc.dir}
			}
			p, _, _, err := rewardmodel.TrainPRMUOnSets(ctx, sets, nil, r)
			if err != nil {
				b.Fatal(err)
			}
			scorer := TagPRRewards(rewardmodel.DefaultTaxonomy(), p)[RewardPRMU]
			g1, cold := step(scorer, 1)
			g2, c2 := step(scorer, 2)
			g3, c3 := step(scorer, 3)
			p.Close()
			cached, gCached := (c2+c3)/2, (g2+g3)/2
			fmt.Printf("bench: rl_step64_%s_generate %.1f ms\n", enc.name, 1000*(g1+g2+g3)/3)
			fmt.Printf("bench: prmu64_%s_cold %.2f ms\n", enc.name, 1000*cold)
			fmt.Printf("bench: prmu64_%s_cached %.2f ms\n", enc.name, 1000*cached)
			fmt.Printf("bench: prmu64_%s_cold_over_generate %.4f x\n", enc.name, cold/g1)
			fmt.Printf("bench: prmu64_%s_cached_over_generate %.4f x\n", enc.name, cached/gCached)
		}
	}
}
