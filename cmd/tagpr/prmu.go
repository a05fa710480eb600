package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/hf"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/rewardmodel"
)

func init() {
	prmuCmd := &cobra.Command{Use: "prmu", Short: "Personalization reward model with user embeddings: train and score"}
	prmuCmd.AddCommand(prmuTrainCmd(), prmuScoreCmd(), prmuScorePredictionsCmd(), prmuCompareCmd())
	rootCmd.AddCommand(prmuCmd)
}

func prmuTrainCmd() *cobra.Command {
	var out string
	var users int
	var trainFiles, devFiles []string
	var o rewardmodel.PRMURecipe
	var stage stageFlags
	var force bool
	var enc rewardmodel.PRMUEncoder
	c := &cobra.Command{
		Use:   "train [-c FILE] | train --out DIR",
		Short: "Train a PRMU: the config's prmu stage, or (with --out) on example files or the synthetic benchmark, saved to DIR",
		Long: "Without --out: runs the config's prmu stage in its run folder (OUT/prmu).\n\n" +
			"With --out: makes Bradley–Terry pairs from the --train example files (default: the synthetic benchmark's train users, " +
			"at the demo's size and seed): the gold output over another label, or over another user's output for a similar " +
			"input. Trains the PRMU on them, reports the pair accuracy on the --dev files (default: the benchmark's dev users), " +
			"and writes DIR/model.onnx and DIR/prmu.json. Its text encoder is a bag of tokens over a small BPE tokenizer " +
			"trained on the pairs (DIR/tokenizer.json), or, with --encoder, a sentence encoder exported with `optimum-cli export " +
			"onnx --task feature-extraction`, frozen (text embeddings computed once, cached in DIR/embeddings.arrow) or tuned " +
			"with LoRA (--encoder-tuning lora); DIR/encoder/ gets a copy, tuned weights merged.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (runErr error) {
			if out == "" {
				if err := refuseOutOnlyFlags(cmd, "--out", "prmu train runs the config's prmu stage (set by stages.prmu.*)"); err != nil {
					return err
				}
				return runStages(cmd, stage, pipeline.StagePRMU)
			}
			if err := stage.refuseWith("prmu train", "--out"); err != nil {
				return err
			}
			err := checkFlags("prmu train", atLeast("--steps", o.Train.Steps, 1), atLeast("--pairs-per-step", o.Train.PairsPerStep, 1),
				positive("--lr", o.Train.LR), atLeast("--users", users, 0), atLeast("--top-k", o.TopK, 0),
				atLeast("--embed", o.Config.Embed, 1), atLeast("--hidden", o.Config.Hidden, 1), atLeast("--max-items", o.Config.MaxItems, 1))
			if err != nil {
				return err
			}
			if err := checkEncoderFlags(cmd, "prmu train", &enc); err != nil {
				return err
			}
			// sft, rl, chains and report take the run folder as --out;
			// here --out is a standalone PRMU's folder. Given a run folder,
			// it trained on other data and wrote beside the run's files.
			if _, err := os.Stat(filepath.Join(out, "data", "done.json")); err == nil {
				return fmt.Errorf("prmu train: --out %s is a run folder (it holds data/done.json), and --out trains a PRMU apart from any run, on the --train files or the synthetic benchmark; to run the config's prmu stage in it, leave out --out and set the config's out (out: %s, or TAGPR_OUT=%s)", out, out, out)
			}
			if err := refuseExisting(filepath.Join(out, rewardmodel.PRMUConfigFile), force); err != nil {
				return fmt.Errorf("prmu train: %w", err)
			}
			if err := initRuntime(); err != nil {
				return err
			}
			defer func() { runErr = keepsNothing(runErr) }() // no checkpoints: an interrupted training is lost
			ctx := cmd.Context()
			trainSets, devSets, err := prmuSets(users, trainFiles, devFiles)
			if err != nil {
				return err
			}
			_, statErr := os.Stat(out)
			made := errors.Is(statErr, os.ErrNotExist)
			lk, err := train.LockRunDir(out) // one writer per output folder, from here to the saved model
			if err != nil {
				return fmt.Errorf("prmu train: %w", err)
			}
			defer func() {
				lk.Unlock()
				if runErr != nil && made { // a folder this run made holds nothing worth keeping
					os.RemoveAll(out)
				}
			}()
			if enc.Dir != "" {
				o.Config.Encoder = &enc
				o.Config.Embed = 0 // the bag's: prmu.json records none
			}
			o.Config.Seed = o.Train.Seed
			o.Train.Session = sessionOptions()
			o.Train.Progress = reporter("loss", "pair_accuracy")
			p, res, accs, err := rewardmodel.TrainPRMUOnSets(ctx, trainSets, devSets, o)
			if err != nil {
				return err
			}
			defer p.Close()
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "trained on %d pairs, %d steps in %.1fs, final loss %.4f\n", p.Info.Pairs, len(res.Losses), res.Duration.Seconds(), p.Info.FinalLoss)
			for _, a := range accs {
				fmt.Fprintf(w, "%s dev pair accuracy %.3f (%d pairs)\n", a.Task, a.Accuracy, a.Pairs)
			}
			if err := p.Save(out); err != nil {
				return err
			}
			if p.Info.DevPairs > 0 {
				fmt.Fprintf(w, "dev pair accuracy %.3f (%d pairs)\n", p.Info.DevAccuracy, p.Info.DevPairs)
			}
			fmt.Fprintf(w, "saved %s\n", out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "directory to write the model, tokenizer and prmu.json to")
	f.IntVar(&o.Train.Steps, "steps", 1000, "optimizer steps")
	f.IntVar(&o.Train.PairsPerStep, "pairs-per-step", 32, "pairs per step")
	f.Float64Var(&o.Train.LR, "lr", 3e-3, "peak learning rate")
	f.Uint64Var(&o.Train.Seed, "seed", 1, "seed of the weights, the pairs and their order")
	f.IntVar(&users, "users", 0, "synthetic users (0: the demo's)")
	f.StringArrayVar(&trainFiles, "train", nil, "examples file (.arrow or .parquet, e.g. from data import-lamp) to train on (repeatable)")
	f.StringArrayVar(&devFiles, "dev", nil, "examples file to measure the pair accuracy on (repeatable)")
	f.IntVar(&o.TopK, "top-k", 0, "profile items per pair, most relevant to the input first (0: all)")
	f.IntVar(&o.Vocab, "vocab", 512, "tokenizer vocab size")
	f.IntVar(&o.Config.Embed, "embed", 64, "token embedding width")
	f.IntVar(&o.Config.Hidden, "hidden", 64, "encoder and fusion width")
	f.IntVar(&o.Config.MaxItems, "max-items", 8, "profile items read per user")
	f.StringVar(&o.Config.Pool, "pool", rewardmodel.PoolMean, "profile pooling: mean or attention")
	f.BoolVar(&force, "force", false, "overwrite a PRMU already in --out")
	encoderFlags(c, &enc, &o)
	addStageFlags(c, &stage, "")
	return c
}

// encoderFlags are the flags that choose a text encoder for PRMU.
func encoderFlags(c *cobra.Command, enc *rewardmodel.PRMUEncoder, o *rewardmodel.PRMURecipe) {
	f := c.Flags()
	f.StringVar(&enc.Dir, "encoder", "", "text encoder: a directory exported with optimum-cli export onnx --task feature-extraction (default: the built-in bag of tokens)")
	f.StringVar(&enc.Pooling, "encoder-pooling", "", "with --encoder: mean or cls (default: the directory's 1_Pooling/config.json)")
	f.IntVar(&enc.MaxTokens, "encoder-max-tokens", 0, "with --encoder: tokens the encoder reads per text, special tokens included (0: 128 or the model's limit)")
	f.StringVar(&enc.Tuning, "encoder-tuning", rewardmodel.TuneFrozen, "with --encoder: frozen (embeddings cached) or lora (adapters on the encoder train with the head)")
	f.IntVar(&enc.LoRARank, "lora-rank", 4, "with --encoder-tuning lora: rank of the encoder's LoRA adapters (≥ 1)")
	f.IntVar(&enc.LoRASteps, "lora-steps", 100, "with --encoder-tuning lora: steps of joint encoder LoRA and head training after the --steps of the head alone (0: none, the encoder stays frozen)")
	f.StringVar(&o.EmbeddingCache, "embedding-cache", "", "with --encoder: an embeddings file (.arrow) to reuse and extend across runs")
	f.Float64Var(&o.Train.MaxMemoryGB, "max-memory-gb", 0, "with --encoder-tuning lora: refuse to start the LoRA phase when its estimated peak memory exceeds this many GiB (0: the memory free; -1: no check)")
	flagSetsKey(f, "max-memory-gb", "runtime.max_memory_gb")
	o.Train.MemoryKnobs = train.MemoryKnobs{Batch: "--pairs-per-step", SeqLen: "--encoder-max-tokens"}
	o.Train.FrozenKnob = "--encoder-tuning frozen"
}

// checkEncoderFlags refuses flags that would be ignored (any encoder flag
// without --encoder; the LoRA ones without --encoder-tuning lora; the bag of
// tokens' --vocab and --embed with --encoder) and
// values out of range, and checks that the encoder folder exists, before
// any work. What it lets through is what trains: LoRA settings only for a
// LoRA run (a frozen PRMU's prmu.json records none), and --lora-steps 0
// (no LoRA phase) trains the frozen recipe and says so.
func checkEncoderFlags(cmd *cobra.Command, command string, enc *rewardmodel.PRMUEncoder) error {
	changed := func(names ...string) string {
		for _, n := range names {
			if cmd.Flags().Changed(n) {
				return "--" + n
			}
		}
		return ""
	}
	if enc.Dir == "" {
		if f := changed("encoder-tuning", "encoder-pooling", "encoder-max-tokens", "embedding-cache", "lora-rank", "lora-steps"); f != "" {
			return fmt.Errorf("%s: %s needs --encoder (a text encoder directory); without it PRMU reads texts as a bag of tokens", command, f)
		}
		return nil
	}
	if f := changed("vocab", "embed"); f != "" {
		return fmt.Errorf("%s: %s sizes the bag of tokens; with --encoder PRMU reads the encoder's embeddings (its own tokenizer and width): leave %s out", command, f, f)
	}
	if err := checkFlags(command, atLeast("--encoder-max-tokens", enc.MaxTokens, 0), atLeast("--lora-rank", enc.LoRARank, 1),
		atLeast("--lora-steps", enc.LoRASteps, 0)); err != nil {
		return err
	}
	if err := checkEncoderDir(command, enc.Dir); err != nil {
		return err
	}
	if enc.Tuning != rewardmodel.TuneLoRA {
		if f := changed("lora-rank", "lora-steps"); f != "" {
			return fmt.Errorf("%s: %s needs --encoder-tuning lora (the encoder is %s)", command, f, enc.Tuning)
		}
		enc.LoRARank, enc.LoRASteps = 0, 0 // no LoRA runs: none is recorded
		return nil
	}
	if enc.LoRASteps == 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "%s: --lora-steps 0: no LoRA phase; the encoder stays frozen\n", command)
		enc.Tuning, enc.LoRARank = rewardmodel.TuneFrozen, 0
	}
	return nil
}

// checkEncoderDir refuses an --encoder that is not a folder, naming it.
func checkEncoderDir(command, dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%s: --encoder %s: no such folder (want an encoder exported with optimum-cli export onnx --task feature-extraction)", command, dir)
	case err != nil:
		return fmt.Errorf("%s: --encoder: %w", command, err)
	case !fi.IsDir():
		return fmt.Errorf("%s: --encoder %s is not a folder (want an encoder exported with optimum-cli export onnx --task feature-extraction)", command, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, rewardmodel.EncoderModelFile)); errors.Is(err, os.ErrNotExist) && hf.IsEncoder(dir) && hf.IsCheckpoint(dir) {
		return fmt.Errorf("%s: --encoder %s is a transformers checkpoint: import it first with tagpr model import-hf %s --out ENCODER and pass --encoder ENCODER", command, dir, dir)
	}
	return nil
}

// prmuSets reads the example files, or, with no --train file, builds the
// synthetic benchmark and takes its train and dev users.
func prmuSets(users int, trainFiles, devFiles []string) (train, dev []rewardmodel.ExampleSet, err error) {
	if len(trainFiles) == 0 {
		if len(devFiles) > 0 {
			return nil, nil, fmt.Errorf("--dev needs --train files")
		}
		sc := datasets.DefaultSynthConfig()
		if users > 0 {
			sc.Users = users
		}
		data, err := datasets.Synth(sc)
		if err != nil {
			return nil, nil, err
		}
		if train, err = rewardmodel.SynthSets(data, "train"); err != nil {
			return nil, nil, err
		}
		dev, err = rewardmodel.SynthSets(data, "dev")
		return train, dev, err
	}
	read := func(paths []string) ([]rewardmodel.ExampleSet, error) {
		var sets []rewardmodel.ExampleSet
		for _, p := range paths {
			if err := checkPinned(p); err != nil {
				return nil, err
			}
			ex, task, err := datasets.ReadExamples(p, datasets.ReadOptions{})
			if err != nil {
				return nil, err
			}
			sets = append(sets, rewardmodel.ExampleSet{Task: task, Examples: ex})
		}
		return sets, nil
	}
	if train, err = read(trainFiles); err != nil {
		return nil, nil, err
	}
	dev, err = read(devFiles)
	return train, dev, err
}

func prmuScoreCmd() *cobra.Command {
	var model, profileFile string
	var responses []string
	c := &cobra.Command{
		Use:   "score --model DIR --profile-file F --response TEXT...",
		Short: "Score responses for the user whose profile is in F",
		Long: "F holds the user's profile items, most relevant first: a JSON list of strings, or else one item per " +
			"non-empty line. Write each item as PRMU was trained on and RL scores them, its fields named and joined " +
			"by \"; \" in the task's field order (LaMP-5: \"title: …; abstract: …\", LaMP-7: \"text: …\"; a dated item " +
			"ends \"; date: …\"): the bare text is another input and scores differently. " +
			"Prints each response's raw score and R_PRMU = sigmoid(score).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(responses) == 0 {
				return fmt.Errorf("give at least one --response")
			}
			profile, err := readProfileFile(profileFile)
			if err != nil {
				return err
			}
			p, err := openPRMU(model)
			if err != nil {
				return err
			}
			defer p.Close()
			profiles := make([][]string, len(responses))
			for i := range profiles {
				profiles[i] = profile
			}
			scores, err := p.Score(cmd.Context(), profiles, responses)
			if err != nil {
				return err
			}
			// The scores do not depend on the cache: a cache that cannot be
			// saved (a read-only or full models folder) costs the next run
			// time, not this one its result.
			if err := p.FlushCache(); err != nil {
				fmt.Fprintf(cmd.ErrOrStderr(), "tagpr: warning: the new embeddings were not saved (%v); the scores are unaffected, the next run encodes those texts again\n", err)
			}
			for i, s := range scores {
				fmt.Fprintf(cmd.OutOrStdout(), "score %.6f r_prmu %.6f response %q\n", s, rewardmodel.PRMUProbability(s), responses[i])
			}
			if e := p.Encoder(); e != nil {
				st := e.Stats()
				fmt.Fprintf(cmd.OutOrStdout(), "encoder: %d texts encoded in %d runs, %d cached in %s\n", st.Texts, st.Runs, p.Cache().Len(), p.Cache().Path())
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&model, "model", "", "PRMU directory (from prmu train)")
	f.StringVar(&profileFile, "profile-file", "", "the user's profile items: a JSON list of strings or one item per line")
	f.StringArrayVar(&responses, "response", nil, "a response to score (repeatable)")
	c.MarkFlagRequired("model")
	c.MarkFlagRequired("profile-file")
	return c
}

func prmuCompareCmd() *cobra.Command {
	var users, steps, loraSteps int
	var enc rewardmodel.PRMUEncoder
	var o rewardmodel.PRMURecipe
	c := &cobra.Command{
		Use:   "compare --encoder DIR",
		Short: "Train PRMUs with each text encoder on the synthetic benchmark and print their dev accuracy table",
		Long: "Trains three PRMUs on the benchmark's train users — the built-in bag of tokens, the --encoder frozen, and " +
			"the --encoder tuned with LoRA (the frozen recipe, then --lora-steps of adapters and head together) — and " +
			"prints, per task, the dev pair accuracy with each user's own profile and with another user's (the " +
			"profile-swap test: a PRMU that reads profiles drops toward chance), as a Markdown table.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) (runErr error) {
			if enc.Dir == "" {
				return fmt.Errorf("--encoder is required: an encoder directory exported with optimum-cli export onnx --task feature-extraction")
			}
			err := checkFlags("prmu compare", atLeast("--steps", steps, 1), atLeast("--lora-steps", loraSteps, 1),
				atLeast("--pairs-per-step", o.Train.PairsPerStep, 1), positive("--lr", o.Train.LR), atLeast("--users", users, 0),
				atLeast("--top-k", o.TopK, 0), atLeast("--hidden", o.Config.Hidden, 1), atLeast("--lora-rank", enc.LoRARank, 1))
			if err != nil {
				return err
			}
			if err := checkEncoderDir("prmu compare", enc.Dir); err != nil {
				return err
			}
			defer func() { runErr = keepsNothing(runErr) }() // no checkpoints: an interrupted comparison is lost
			if err := initRuntime(); err != nil {
				return err
			}
			trainSets, devSets, err := prmuSets(users, nil, nil)
			if err != nil {
				return err
			}
			o.Config.Seed = o.Train.Seed
			o.Train.Session = sessionOptions()
			bar := newProgress("prmu compare", 3*steps+loraSteps)
			o.Train.Progress = func(p train.Progress) { // one bar over every run
				if p.Note == "" {
					bar.Step(1, "loss", fmt.Sprintf("%.4f", p.Metrics["loss"]), "pair_acc", fmt.Sprintf("%.2f", p.Metrics[train.PairAccuracyOutput]))
				}
			}
			o.Train.Steps = steps
			recipe := func(tuning string) rewardmodel.PRMURecipe {
				r := o
				if tuning != "" {
					e := enc
					e.Tuning = tuning
					if tuning == rewardmodel.TuneLoRA {
						e.LoRASteps = loraSteps
					} else {
						e.LoRARank = 0 // no LoRA runs
					}
					r.Config.Encoder = &e
				}
				return r
			}
			recipes := []rewardmodel.NamedPRMURecipe{
				{Name: "bag of tokens", Recipe: recipe("")},
				{Name: "frozen encoder", Recipe: recipe(rewardmodel.TuneFrozen)},
				{Name: "LoRA-tuned encoder", Recipe: recipe(rewardmodel.TuneLoRA)},
			}
			rows, err := rewardmodel.ComparePRMUs(cmd.Context(), trainSets, devSets, recipes, func(c rewardmodel.PRMUComparison) {
				logLine("prmu compare", fmt.Sprintf("%s: %d + %d LoRA steps in %.1fs", c.Name, c.Steps, c.LoRASteps, c.TrainSeconds))
			})
			bar.Finish()
			if err != nil {
				return err
			}
			return rewardmodel.WriteComparison(cmd.OutOrStdout(), rows)
		},
	}
	f := c.Flags()
	f.IntVar(&users, "users", 0, "synthetic users (0: the demo's)")
	f.IntVar(&steps, "steps", 1000, "optimizer steps of each PRMU's head (the LoRA-tuned one's warm start)")
	f.IntVar(&loraSteps, "lora-steps", 300, "steps of joint encoder LoRA and head training after the head's, ≥ 1 (each runs the encoder forward and backward)")
	f.IntVar(&o.Train.PairsPerStep, "pairs-per-step", 32, "pairs per step")
	f.Float64Var(&o.Train.LR, "lr", 3e-3, "peak learning rate")
	f.Uint64Var(&o.Train.Seed, "seed", 1, "seed of the weights, the pairs and their order")
	f.IntVar(&o.TopK, "top-k", 0, "profile items per pair, most relevant to the input first (0: all)")
	f.IntVar(&o.Config.Hidden, "hidden", 64, "encoder and fusion width")
	f.StringVar(&enc.Dir, "encoder", "", "the text encoder directory (optimum-cli export onnx --task feature-extraction)")
	f.StringVar(&enc.Pooling, "encoder-pooling", "", "mean or cls (default: the directory's 1_Pooling/config.json)")
	f.IntVar(&enc.LoRARank, "lora-rank", 4, "rank of the encoder's LoRA adapters (≥ 1)")
	return c
}

// readProfileFile reads profile items: a JSON list of strings, or else one
// item per non-empty line.
func readProfileFile(path string) ([]string, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read profile: %w", err)
	}
	var items []string
	if trimmed := strings.TrimSpace(string(raw)); strings.HasPrefix(trimmed, "[") {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("read profile %s: want a JSON list of strings: %w", path, err)
		}
	} else {
		for _, line := range strings.Split(string(raw), "\n") {
			if line = strings.TrimSpace(line); line != "" {
				items = append(items, line)
			}
		}
	}
	if len(items) == 0 {
		return nil, fmt.Errorf("read profile %s: no profile items", path)
	}
	return items, nil
}
