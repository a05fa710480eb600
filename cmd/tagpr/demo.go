package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

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
			rep, err := pipeline.RunDemo(cmd.Context(), cfg, reporter("loss", "learning_rate", "reward", "completions/mean_length", "kl"))
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
