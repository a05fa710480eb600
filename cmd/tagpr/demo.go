package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline"
)

func init() {
	var dir string
	var steps, evalN, rlSteps int
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the main job on the built-in default: synthetic data → tokenizer → model → SFT on tagged chains → RL (guided, exploratory) → evaluation → report",
		Long: "Runs the TagPR recipe end to end on the built-in synthetic personalization benchmark, in --dir.\n" +
			"Every stage's output appears atomically: after Ctrl-C, the same command resumes (SFT and RL stages from their last checkpoint).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := initRuntime(); err != nil {
				return err
			}
			cfg := pipeline.DefaultDemoConfig(dir)
			cfg.Session = sessionOptions()
			if steps > 0 {
				cfg.SFT.Steps = steps
			}
			if evalN > 0 {
				cfg.Eval.Examples = evalN
			}
			switch {
			case rlSteps < 0:
				cfg.RL = nil
			case rlSteps > 0:
				for i := range cfg.RL {
					cfg.RL[i].Steps = rlSteps
				}
			}
			var bar *progress
			rlBars := map[string]*progress{}
			hooks := pipeline.Hooks{
				Stage: func(name, detail string) { logLine(name, detail) },
				SFTStep: func(l train.StepLog, total int) {
					if bar == nil {
						bar = newProgress("sft", total)
						bar.done = l.Step - 1
					}
					bar.Step(1, "loss", fmt.Sprintf("%.4f", l.Loss), "lr", fmt.Sprintf("%.2g", l.LR))
					if l.Step == total {
						bar.Finish()
					}
				},
				RLStep: func(l pipeline.RLStepLog, total int) {
					b := rlBars[l.Stage]
					if b == nil {
						b = newProgress("rl "+l.Stage, total)
						b.done = l.Step - 1
						rlBars[l.Stage] = b
					}
					attrs := []any{"reward", fmt.Sprintf("%.3f", l.Reward.Mean), "len", fmt.Sprintf("%.0f", l.Length.Mean)}
					if l.KL != nil {
						attrs = append(attrs, "kl", fmt.Sprintf("%.4f", *l.KL))
					}
					b.Step(1, attrs...)
					if l.Step == total {
						b.Finish()
					}
				},
			}
			rep, err := pipeline.RunDemo(cmd.Context(), cfg, hooks)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "\n%s\n", rep.Markdown())
			fmt.Fprintf(out, "report: %s and %s\n", filepath.Join(dir, "report.md"), filepath.Join(dir, "report.json"))
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "dir", "out/demo", "working directory of the demo (resumed when it exists)")
	cmd.Flags().IntVar(&steps, "sft-steps", 0, "SFT steps (default: the demo's built-in number)")
	cmd.Flags().IntVar(&rlSteps, "rl-steps", 0, "steps of each RL stage (default: the demo's built-in number; -1: no RL)")
	cmd.Flags().IntVar(&evalN, "eval-examples", 0, "dev examples per task to evaluate (default: the demo's built-in number)")
	rootCmd.AddCommand(cmd)
}
