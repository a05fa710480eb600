package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var task, golds, preds, base, out string
	var o stageFlags
	cmd := &cobra.Command{
		Use:   "eval [-c FILE] | eval --task N --golds dev_outputs.json --predictions preds.json [--base base.json] [--out DIR]",
		Short: "Score predictions against golds (accuracy/F1, MAE/RMSE or ROUGE-1/L): the config's eval stage, or LaMP-format files",
		Long: "Without --golds: runs the config's eval stage (every predicted model on every split with golds, in OUT/eval).\n\n" +
			"With --golds: reads predictions and golds in LaMP's outputs format ({\"task\": \"LaMP_N\", \"golds\": [{id, output}]}),\n" +
			"computes the task's LaMP metrics and, with --base, the relative improvement over a base model's predictions.\n" +
			"Every gold id needs a prediction. With --out, writes report.md and report.json there.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if golds == "" {
				if task != "" || preds != "" || base != "" || out != "" {
					return fmt.Errorf("--task, --predictions, --base and --out go with --golds")
				}
				return runStages(cmd, o, pipeline.StageEval)
			}
			if task == "" || preds == "" {
				return fmt.Errorf("--golds needs --task and --predictions")
			}
			t, err := datasets.ParseTask(task)
			if err != nil {
				return err
			}
			if err := checkPinned(golds, preds, base); err != nil {
				return err
			}
			r, err := pipeline.LaMPEval(t, golds, preds, base)
			if err != nil {
				return err
			}
			r.Split = "eval"
			rep := &pipeline.Report{Title: "tagpr eval: " + t.Name, Created: time.Now(), Model: preds, Dataset: golds, Tasks: []pipeline.TaskResult{r}}
			if err := rep.Finalize(); err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), rep.Markdown())
			if out != "" {
				if err := rep.Write(out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\nreport: %s\n", filepath.Join(out, "report.md"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&task, "task", "", "LaMP task: 1, 2M, 2N, 3, 4, 5, 6, 7 (or a synth_* task)")
	cmd.Flags().StringVar(&golds, "golds", "", "gold outputs file ({split}_outputs.json)")
	cmd.Flags().StringVar(&preds, "predictions", "", "predictions in the same format")
	cmd.Flags().StringVar(&base, "base", "", "a base model's predictions, for the relative improvement")
	cmd.Flags().StringVar(&out, "out", "", "folder for report.md and report.json")
	addStageFlags(cmd, &o, "")
	rootCmd.AddCommand(cmd)
}
