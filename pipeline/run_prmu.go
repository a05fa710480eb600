package pipeline

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// prmuSession is the runtime's options with the stage's own thread count,
// and pool threads that do not spin unless runtime.spinning says so (PRMU
// runs between generations).
func (r *runEnv) prmuSession() ort.Options {
	o := r.sess
	if t := r.cfg.Stages.PRMU.Threads; t > 0 {
		o.IntraOpThreads = t
	}
	return o.DefaultSpinning(false)
}

// trainPRMU trains the reward model on every task's training users (gold ≻
// another label or another user's output; with policy_samples, also gold ≻
// the SFT model's wrong samples), measures its pair accuracy on the dev
// users, and saves it to prmu/.
func (r *runEnv) trainPRMU(ctx context.Context) error {
	dir := r.dir("prmu")
	sumPath := filepath.Join(dir, summaryFile)
	if err := r.checkStamp(dir, StagePRMU, r.prmuSettings(), exists(sumPath)); err != nil {
		return err
	}
	if exists(sumPath) {
		r.noteDone(StagePRMU, "the PRMU stage", dir, true)
		return nil
	}
	p := r.cfg.Stages.PRMU
	seed := r.cfg.stageSeed(p.Seed, seedPRMU)
	var trainSets, devSets []rewardmodel.ExampleSet
	for _, td := range r.data.Tasks {
		trainSets = append(trainSets, rewardmodel.ExampleSet{Task: td.Task, Examples: td.Splits["train"]})
		if dev := td.Splits["dev"]; len(dev) > 0 {
			devSets = append(devSets, rewardmodel.ExampleSet{Task: td.Task, Examples: dev})
		}
	}
	var extra []rewardmodel.PRMUPair
	sampled := 0
	if p.PolicySamples > 0 {
		var err error
		if extra, sampled, err = r.policySamplePairs(ctx, p.PolicySamples, seed); err != nil {
			return err
		}
	}
	enc, err := r.prmuEncoder()
	if err != nil {
		return err
	}
	note(r.h, StagePRMU, "training the reward model on the training users' pairs (%d from policy samples)", len(extra))
	start := time.Now()
	opts := r.prmuSession()
	recipe := rewardmodel.PRMURecipe{TopK: r.cfg.Retrieval.TopK, Recency: r.cfg.Retrieval.Method == "recency", Vocab: p.Vocab, Extra: extra,
		Config: rewardmodel.PRMUConfig{Embed: p.Embed, Hidden: p.Hidden, MaxItems: p.MaxItems, Pool: p.Pool, Seed: seed, Encoder: enc},
		Train: rewardmodel.PRMUTrainOptions{Steps: p.Steps, PairsPerStep: p.PairsPerStep, LR: p.LR, Seed: seed, Session: opts,
			MaxMemoryGB: r.cfg.Runtime.MaxMemoryGB, FrozenKnob: "stages.prmu.encoder.tuning: frozen",
			MemoryKnobs: train.MemoryKnobs{Batch: "stages.prmu.pairs_per_step", SeqLen: "stages.prmu.encoder.max_tokens"}}}
	recipe.Train.Progress = r.h
	model, res, accs, err := rewardmodel.TrainPRMUOnSets(ctx, trainSets, devSets, recipe)
	if err != nil {
		return err
	}
	defer model.Close()
	final := map[string]float64{"loss": model.Info.FinalLoss, "dev_pair_accuracy": model.Info.DevAccuracy, "policy_samples": float64(sampled), "policy_sample_pairs": float64(len(extra))}
	for _, a := range accs {
		note(r.h, StagePRMU, "%s dev pair accuracy %.3f (%d pairs)", a.Task, a.Accuracy, a.Pairs)
		final["dev_pair_accuracy_"+a.Task] = a.Accuracy
	}
	if err := model.Save(dir); err != nil {
		return err
	}
	if err := writeJSON(sumPath, StageSummary{Name: StagePRMU, Steps: len(res.Losses), Seconds: time.Since(start).Seconds(), Final: final, Machine: ort.Machine(opts), Tagpr: buildinfo.String()}); err != nil {
		return err
	}
	return r.dropImport("encoder", StagePRMU) // the saved PRMU holds its own copy of the encoder
}

// policySamplePairs samples n completions per training example from the SFT
// model and pairs the gold over each answer whose task reward is below 1
// (completions without an answer give none: PRMU reads answers). It also
// returns how many completions were sampled.
func (r *runEnv) policySamplePairs(ctx context.Context, n int, seed uint64) ([]rewardmodel.PRMUPair, int, error) {
	pol, err := r.openModel(ModelSFT)
	if err != nil {
		return nil, 0, fmt.Errorf("prmu policy samples: %w", err)
	}
	defer pol.Model.Close()
	o := r.prompt
	maxNew := r.cfg.Stages.Predict.MaxNewTokens
	var pairs []rewardmodel.PRMUPair
	sampled := 0
	for _, td := range r.data.Tasks {
		exs := td.Splits["train"]
		note(r.h, StagePRMU, "%s: sampling %d completions for each of %d training examples from the SFT model", td.Task.Name, n, len(exs))
		kind := RewardKind(td.Task)
		const batch = 8
		for lo := 0; lo < len(exs); lo += batch {
			hi := min(lo+batch, len(exs))
			var prompts []RLPrompt
			var ids [][]int64
			for i := lo; i < hi; i++ {
				p, err := EncodeRLPrompt(r.tok, td.Task, &exs[i], r.tx, o)
				if err != nil {
					return nil, 0, err
				}
				prompts, ids = append(prompts, p), append(ids, p.IDs)
			}
			comps, _, err := pol.Model.Generate(ctx, ids, lm.GenerateOptions{MaxNewTokens: maxNew, NumGenerations: n,
				Sampling: lm.Sampling{Temperature: 1}, Seed: seed ^ (uint64(lo) * 0x9e3779b97f4a7c15), EOS: r.eos, NoLogProbs: true})
			if err != nil {
				return nil, 0, fmt.Errorf("prmu policy samples: %w", err)
			}
			sampled += len(comps)
			answers := make([][]string, len(prompts))
			rewards := make([][]float64, len(prompts))
			for _, c := range comps {
				text, err := r.tok.DecodeCompletion(c.Tokens)
				if err != nil {
					return nil, 0, err
				}
				ans, ok := rewardmodel.ExtractAnswer(text)
				if !ok || ans == "" {
					continue // PRMU reads answers; a broken format has none
				}
				answers[c.Prompt] = append(answers[c.Prompt], ans)
				rewards[c.Prompt] = append(rewards[c.Prompt], rewardmodel.TaskReward(kind, ans, prompts[c.Prompt].Gold))
			}
			for i, p := range prompts {
				if len(answers[i]) == 0 || !exs[lo+i].HasOutput {
					continue
				}
				ps, err := rewardmodel.PolicySamplePairs(p.Profile, p.Gold, answers[i], rewards[i], 1)
				if err != nil {
					return nil, 0, err
				}
				pairs = append(pairs, ps...)
			}
			// Each batch's progress: the sampling is the stage's longest
			// part (a minute a task at 0.5B with 8 examples), and it was
			// silent between its note and the training's first step.
			r.h.Report(train.Progress{Task: StagePRMU, Step: hi, Total: len(exs), Metrics: map[string]float64{"samples": float64(sampled)}})
		}
	}
	return pairs, sampled, nil
}

// loadPRMU opens the trained reward model for the RL stages (nil when the
// stage is skipped).
func (r *runEnv) loadPRMU() (PRMUScorer, error) {
	if r.cfg.Stages.PRMU.Skip {
		return nil, nil
	}
	if r.prmu == nil {
		p, err := rewardmodel.LoadPRMU(r.dir("prmu"), r.prmuSession())
		if err != nil {
			return nil, err
		}
		r.prmu = p
	}
	return r.prmu, nil
}

// encoderDirKey is the config key of the PRMU encoder's folder.
const encoderDirKey = "stages.prmu.encoder.dir"

// encoderFiles are the files of stages.prmu.encoder.dir the PRMU stage's
// stamp names, found once a run: rewardmodel.EncoderFiles, and for a
// transformers checkpoint its weights and configs too.
func (r *runEnv) encoderFiles() ([]string, error) {
	if r.encoder != nil {
		return r.encoder, nil
	}
	dir := r.cfg.Stages.PRMU.Encoder.Dir
	files := rewardmodel.EncoderFiles(dir)
	if isCheckpoint(dir) {
		ck, err := modelFiles(dir)
		if err != nil {
			return nil, err
		}
		files = append(ck, files...)
	} else if _, err := lm.ResolveModelPath(dir); err != nil {
		return nil, fmt.Errorf("%w (or a BERT, RoBERTa, XLM-RoBERTa or MPNet transformers checkpoint)", err)
	}
	r.encoder = files
	return files, nil
}

// prmuEncoder is stages.prmu.encoder with its folder, or out/encoder when
// that is a transformers checkpoint (imported there); nil without one.
func (r *runEnv) prmuEncoder() (*rewardmodel.PRMUEncoder, error) {
	enc := r.cfg.Stages.PRMU.Encoder.encoder()
	if enc == nil || !isCheckpoint(enc.Dir) {
		return enc, nil
	}
	files, err := r.encoderFiles()
	if err != nil {
		return nil, fmt.Errorf("stages.prmu.encoder.dir: %w", err)
	}
	if enc.Dir, err = r.importedCopy(encoderDirKey, enc.Dir, r.dir("encoder"), files); err != nil {
		return nil, err
	}
	return enc, nil
}
