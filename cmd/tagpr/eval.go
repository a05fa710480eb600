package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/internal/buildinfo"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var task, golds, preds, base, out, split string
	var resamples int
	var seed uint64
	var force bool
	var o stageFlags
	cmd := &cobra.Command{
		Use:   "eval [-c FILE] | eval --task N --golds dev_outputs.json --predictions preds.json [--base base.json] [--out DIR [--force]]",
		Short: "Score predictions against golds (accuracy/F1, MAE/RMSE or ROUGE-1/L): the config's eval stage, or LaMP-format files",
		Long: "Without --golds: runs the config's eval stage (every predicted model on every split with golds, in OUT/eval);\n" +
			"the report stage (`tagpr report`) then rebuilds report.json, metrics.json, report.md and report.html from it.\n\n" +
			"With --golds: reads predictions and golds in LaMP's outputs format ({\"task\": \"LaMP_N\", \"golds\": [{id, output}]}),\n" +
			"computes the task's LaMP metrics with bootstrap 95% intervals and, with --base, the paired difference from a base\n" +
			"model's predictions on the same examples (significant or not) and the relative improvement over it.\n" +
			"Every gold id needs a prediction. With --out, writes report.html, report.md, report.json and metrics.json there\n" +
			"(existing ones are kept unless --force).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if golds == "" {
				if task != "" || preds != "" || base != "" || out != "" || force || cmd.Flags().Changed("bootstrap") || cmd.Flags().Changed("seed") || cmd.Flags().Changed("split") {
					return fmt.Errorf("--task, --predictions, --base, --out, --force, --bootstrap, --seed and --split go with --golds (the config's eval stage takes stages.eval.bootstrap and seed, and its run folder from the config's out: out: DIR or TAGPR_OUT=DIR, not --out)")
				}
				return runStages(cmd, o, pipeline.StageEval)
			}
			if task == "" || preds == "" {
				return fmt.Errorf("--golds needs --task and --predictions")
			}
			if err := o.refuseWith("eval", "--golds"); err != nil {
				return err
			}
			if err := splitFromLaMPNames(cmd, "eval", &split, "--golds", golds); err != nil {
				return err
			}
			if resamples < 100 || resamples > 100000 {
				return fmt.Errorf("--bootstrap %d: want 100 to 100000 resamples", resamples)
			}
			t, err := datasets.ParseTask(task)
			if err != nil {
				return err
			}
			if err := checkPinned(golds, preds, base); err != nil {
				return err
			}
			if out != "" {
				for _, f := range pipeline.ReportFiles {
					if err := refuseExisting(filepath.Join(out, f), force); err != nil {
						return err
					}
				}
			} else if force {
				return fmt.Errorf("--force goes with --out")
			}
			r, err := pipeline.LaMPEval(t, golds, preds, base, split, pipeline.Bootstrap{Resamples: resamples, Seed: seed})
			if err != nil {
				return err
			}
			rep := &pipeline.Report{Title: "tagpr eval: " + t.Name, Created: time.Now(), Tagpr: buildinfo.String(), Model: preds, Dataset: golds, Tasks: []pipeline.TaskEval{r}}
			for _, m := range r.Models {
				rep.Models = append(rep.Models, m.Name)
			}
			for _, n := range r.Notes { // e.g. how many ratings were not numbers
				rep.Notes = append(rep.Notes, r.Task+": "+n)
			}
			rep.Finalize()
			fmt.Fprint(cmd.OutOrStdout(), rep.Markdown())
			if out != "" {
				if err := rep.Write(out); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "\nreport: %s, %s\n", filepath.Join(out, "report.html"), filepath.Join(out, "report.md"))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&task, "task", "", "LaMP task: 1, 2M, 2N, 3, 4, 5, 6, 7 (or a synth_* task)")
	cmd.Flags().StringVar(&golds, "golds", "", "gold outputs file ({split}_outputs.json)")
	cmd.Flags().StringVar(&preds, "predictions", "", "predictions in the same format")
	cmd.Flags().StringVar(&base, "base", "", "a base model's predictions, for the relative improvement")
	cmd.Flags().StringVar(&out, "out", "", "folder for report.md, report.html, report.json and metrics.json")
	cmd.Flags().BoolVar(&force, "force", false, "overwrite the report files already in --out")
	cmd.Flags().IntVar(&resamples, "bootstrap", pipeline.DefaultResamples, "bootstrap resamples of the examples for the 95% intervals (100 to 100000)")
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed of the bootstrap resamples")
	cmd.Flags().StringVar(&split, "split", "dev", "the split the golds are (it names the resamples: a run's report gives the split and seed that reproduce its intervals; default: the one LaMP's file name says, {split}_outputs.json, else dev)")
	addStageFlags(cmd, &o, "")
	rootCmd.AddCommand(cmd)
}
