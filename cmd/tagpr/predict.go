package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var o stageFlags
	var f predictFileFlags
	var force bool
	c := &cobra.Command{
		Use:   "predict [-c FILE] [--shard i/N|auto] | predict --model DIR --task N --questions FILE --out FILE [--shard i/N|auto]",
		Short: "Greedy predictions in LaMP's outputs format: the config's predict stage, or one model folder on one questions file",
		Long: "Without --model: runs the config's predict stage (every listed model on every task and split, in\n" +
			"OUT/predictions/MODEL/TASK_SPLIT.{json,parquet}). With --shard i/N|auto it is one of N workers sharing\n" +
			"OUT: each generates its shard's batches of every file, as below, and `tagpr predict merge -c FILE`\n" +
			"assembles them (the same bytes as one process) and marks the stage done for eval.\n\n" +
			"With --model: renders each question of --questions through the model folder's chat template\n" +
			"(tokenizer.json and tokenizer_config.json beside model.onnx), with the profile items retrieval picks and\n" +
			"the instruction the recipe trains on, generates greedily, extracts the text of the <answer> element\n" +
			"(\"\" when the format is broken) and writes {\"task\": \"LaMP_N\", \"golds\": [{\"id\", \"output\"}]} to --out\n" +
			"(and the completions to OUT.parquet). Retrieval, taxonomy, batch and max_new_tokens come from the config.\n\n" +
			"Each generation batch is written atomically to OUT.parquet.parts/ (removed once OUT is written): an\n" +
			"interrupted run resumes where it stopped; an OUT a finished run wrote is kept unless --force. With --shard i/N (or --shard auto in a Kubernetes Indexed Job:\n" +
			"the index from $JOB_COMPLETION_INDEX, the count from $TAGPR_SHARD_COUNT) only that shard's batches are\n" +
			"generated — the questions are cut into batches from the start, as one process cuts them, and batch k\n" +
			"belongs to shard k mod N, so every batch pads and generates exactly as in one process — and every worker\n" +
			"writes its parts into the same folder on a shared volume; a restarted worker redoes only the batches its\n" +
			"shard has no part for. `tagpr predict merge` then writes OUT: the same bytes as one unsharded run.\n\n" + runLong,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.model == "" {
				if f.task != "" || f.questions != "" || f.out != "" || force {
					return fmt.Errorf("--task, --questions, --out and --force go with --model (the config's predict stage takes its run folder from the config's out: out: DIR or TAGPR_OUT=DIR, not --out)")
				}
				sh, err := datasets.ParseShardFlag(f.shard)
				if err != nil {
					return err
				}
				if err := runStagesWith(cmd, o, pipeline.RunOptions{Only: []string{pipeline.StagePredict}, Shard: sh}); err != nil {
					return err
				}
				if sh.Count > 1 {
					fast := ""
					if o.fastDevRun {
						fast = " --fast-dev-run"
					}
					fmt.Fprintf(cmd.OutOrStdout(), "predict: shard %s done; when every shard is done: tagpr predict merge -c %s%s\n", sh, cfgSource, fast)
				}
				return nil
			}
			if f.task == "" || f.questions == "" || f.out == "" {
				return fmt.Errorf("--model needs --task, --questions and --out")
			}
			if err := o.refuseWith("predict", "--model"); err != nil {
				return err
			}
			po, err := f.options()
			if err != nil {
				return err
			}
			// A finished run leaves OUT and no parts: predicting again would
			// redo every batch and replace OUT, so it takes --force. An
			// interrupted run (parts left) resumes.
			if _, err := os.Stat(f.parts()); errors.Is(err, os.ErrNotExist) {
				if err := refuseExisting(f.out, force); err != nil {
					return fmt.Errorf("predict: %w (a finished run's predictions)", err)
				}
			}
			if err := checkModelTokenizerPinned(f.model); err != nil {
				return err
			}
			if err := initRuntime(); err != nil {
				return err
			}
			po.Model, po.Session, po.Progress = f.model, sessionOptions(), reporter("rows")
			st, err := pipeline.PredictFile(cmd.Context(), po)
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if !st.Merged {
				fmt.Fprintf(w, "predict: shard %s: %d questions done now, %d done before; when every shard is done: tagpr predict merge --task %s --questions %s --out %s\n",
					po.Shard, st.Done, st.Skipped, f.task, f.questions, f.out)
				return nil
			}
			fmt.Fprintf(w, "predicted %d %s questions with %s (%d now, %d done before): %s\n", st.Predictions, po.Task.Name, f.model, st.Done, st.Skipped, f.out)
			return nil
		},
	}
	fl := c.Flags()
	fl.StringVar(&f.model, "model", "", "model folder (model.onnx, config.json, tokenizer.json)")
	f.addFlags(c)
	fl.StringVar(&f.shard, "shard", "", "only this shard's batches: i/N, or auto ($JOB_COMPLETION_INDEX of $TAGPR_SHARD_COUNT)")
	fl.BoolVar(&force, "force", false, "with --model: predict again and overwrite an --out a finished run wrote")
	addStageFlags(c, &o, "")
	c.AddCommand(predictMergeCmd())
	rootCmd.AddCommand(c)
}

// predictFileFlags are the flags of predict on one questions file.
type predictFileFlags struct {
	model, task, questions, out, shard string
}

// parts is the folder of OUT's generation batches (OUT.parquet.parts).
func (f *predictFileFlags) parts() string {
	return datasets.PartsFor(strings.TrimSuffix(f.out, ".json")+".parquet", datasets.Shard{}).Dir
}

func (f *predictFileFlags) addFlags(c *cobra.Command) {
	fl := c.Flags()
	fl.StringVar(&f.task, "task", "", "LaMP task: 1, 2M (or 2: movie tagging), 2N, 3, 4, 5, 6, 7 (or a synth_* task)")
	fl.StringVar(&f.questions, "questions", "", "LaMP questions file ({split}_questions.json)")
	fl.StringVar(&f.out, "out", "", "predictions to write (.json, LaMP's outputs format); rows go to OUT.parquet, parts to OUT.parquet.parts")
}

// options are the pipeline's options for these flags and the config
// (retrieval, taxonomy, chat template, stages.predict's batch and
// max_new_tokens: every worker and the merge must agree on them).
func (f *predictFileFlags) options() (pipeline.PredictFileOptions, error) {
	var po pipeline.PredictFileOptions
	t, err := datasets.ParseTask(f.task)
	if err != nil {
		return po, err
	}
	sh, err := datasets.ParseShardFlag(f.shard)
	if err != nil {
		return po, err
	}
	tx, err := pipeline.LoadTaxonomy(runCfg.Taxonomy)
	if err != nil {
		return po, err
	}
	if err := checkPinned(f.questions); err != nil {
		return po, err
	}
	p := runCfg.Stages.Predict
	// The config's keys this mode reads are checked as a run checks them
	// (the rest of the config is not this mode's): a batch or
	// max_new_tokens of 0 or less was silently 16 or 160.
	if p.Batch < 1 || p.MaxNewTokens < 1 {
		return po, configError(fmt.Errorf("stages.predict: batch %d, max_new_tokens %d: want ≥ 1", p.Batch, p.MaxNewTokens))
	}
	prompt := pipeline.PromptOptions{TopK: runCfg.Retrieval.TopK, Retrieval: runCfg.Retrieval.Method, MaxTokens: runCfg.Retrieval.MaxPromptTokens}
	if err := prompt.Validate(); err != nil {
		return po, configError(fmt.Errorf("retrieval: %w", err))
	}
	return pipeline.PredictFileOptions{Task: t, Questions: f.questions, Out: f.out, Taxonomy: tx, ChatTemplate: runCfg.Tokenizer.ChatTemplate, Shard: sh,
		Half: runCfg.Runtime.HalfGeneration(),
		Eval: pipeline.EvalOptions{Batch: p.Batch, MaxNewTokens: p.MaxNewTokens, Prompt: prompt}}, nil
}

func predictMergeCmd() *cobra.Command {
	var f predictFileFlags
	var o stageFlags
	c := &cobra.Command{
		Use:   "merge --task N --questions FILE --out FILE | merge -c FILE",
		Short: "Assemble the parts every `predict --shard` worker wrote into OUT.parquet and OUT (LaMP's outputs format)",
		Long: `Writes OUT.parquet from OUT.parquet.parts/ (the parts of every ` + "`predict --model … --shard`" + ` worker), in the
questions' order, then OUT in LaMP's outputs format, and removes the parts: the same bytes as one unsharded
run. Refuses while any question has no prediction (a worker still running or failed: run it again, it redoes
only its missing batches). Give it the workers' --task, --questions, --out and config.

With only -c FILE: assembles the parts of every file of the config's predict stage that ` + "`tagpr predict -c FILE --shard`" + `
workers wrote (generating nothing) and marks each model done for eval.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.task == "" && f.questions == "" && f.out == "" {
				if err := runStagesWith(cmd, o, pipeline.RunOptions{Only: []string{pipeline.StagePredict}, MergeShards: true}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "predict: every shard's predictions merged in %s\n", filepath.Join(o.out(), "predictions"))
				return nil
			}
			if f.task == "" || f.questions == "" || f.out == "" {
				return fmt.Errorf("predict merge: give --task, --questions and --out (one file), or none of them (the config's predict stage)")
			}
			if err := o.refuseWith("predict merge", "--out"); err != nil {
				return err
			}
			po, err := f.options()
			if err != nil {
				return err
			}
			n, err := pipeline.MergePredictions(po)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "predict: %s holds %d %s predictions\n", f.out, n, po.Task.Name)
			return nil
		},
	}
	f.addFlags(c)
	addStageFlags(c, &o, "")
	return c
}
