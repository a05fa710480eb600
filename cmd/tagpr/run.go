package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/pipeline"
)

// stageFlags are the flags every run and stage command takes.
type stageFlags struct {
	fastDevRun bool
}

// out is the run folder the stages write: the config's, or its
// fast_dev_run folder.
func (o stageFlags) out() string {
	if o.fastDevRun {
		return runCfg.FastDevRun().Out
	}
	return runCfg.Out
}

// refuseWith refuses --fast-dev-run in a command's mode that does not run
// the config's stages (mode: the flag that selects it), where it would be
// ignored.
func (o stageFlags) refuseWith(command, mode string) error {
	if o.fastDevRun {
		return fmt.Errorf("%s: --fast-dev-run cuts the config's stages; with %s it would be ignored: leave it out", command, mode)
	}
	return nil
}

func addStageFlags(c *cobra.Command, o *stageFlags, outFlag string) {
	c.Flags().BoolVar(&o.fastDevRun, "fast-dev-run", false, "every stage on a handful of examples and steps, in OUT/fast_dev_run: try a config end to end in about a minute")
	if outFlag != "" {
		c.Flags().String(outFlag, "", "run folder (the config's out)")
		flagSetsKey(c.Flags(), outFlag, "out")
	}
}

// runStages runs the loaded config's stages (only: just these) and prints
// the report when one was made.
func runStages(cmd *cobra.Command, o stageFlags, only ...string) error {
	return runStagesWith(cmd, o, pipeline.RunOptions{Only: only})
}

// runStagesWith is runStages with more of the pipeline's options (Only
// included): predict's shard workers and their merge.
func runStagesWith(cmd *cobra.Command, o stageFlags, ro pipeline.RunOptions) error {
	cfg := runCfg
	if err := cfg.Validate(); err != nil {
		return configError(err)
	}
	if o.fastDevRun {
		cfg = cfg.FastDevRun()
	}
	if err := initRuntime(); err != nil {
		return err
	}
	ro.Progress = reporter("loss", "learning_rate", "pair_accuracy", "reward", "completions/mean_length", "kl", "rows",
		// which weighted reward drives learning (grpo.Contribution)
		"rewards/task/signal", "rewards/tag/signal", "rewards/prmu/signal")
	rep, err := pipeline.Run(cmd.Context(), cfg, ro)
	if err != nil {
		return err
	}
	if rep != nil {
		out := cmd.OutOrStdout()
		fmt.Fprintf(out, "\n%s\n", rep.Markdown())
		fmt.Fprintf(out, "report: %s (charts, confusion matrices, sample chains), %s, %s; metrics: %s; TensorBoard: tensorboard --logdir %s\n",
			filepath.Join(cfg.Out, "report.html"), filepath.Join(cfg.Out, "report.md"), filepath.Join(cfg.Out, "report.json"), filepath.Join(cfg.Out, "metrics.json"), cfg.Out)
	}
	return nil
}

const runLong = `The run config (-c FILE, YAML/TOML/JSON; default: the built-in configs/demo.yaml) names the data
(LaMP's download layout, lamp_example files or the synthetic benchmark), the policy (an exported model
folder or a built-in one), the teacher and every stage's settings. TAGPR_* variables and flags override
it; ` + "`tagpr config print -c FILE`" + ` shows the effective whole. Every check that needs no work (unknown keys,
wrong types, missing or altered files, a setting changed since a stage finished) fails before anything
starts. Every stage's output appears atomically: after Ctrl-C or a crash the same command skips what is
finished and resumes what is not (training from its last checkpoint).`

func init() {
	var o stageFlags
	runCmd := &cobra.Command{
		Use:   "run [-c FILE]",
		Short: "Run the whole recipe as the config says: chains → SFT → PRMU → RL stages → predict → eval → report",
		Long:  "Runs every stage of the config in order, in its out folder.\n\n" + runLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return runStages(cmd, o) },
	}
	addStageFlags(runCmd, &o, "out")

	var d stageFlags
	demoCmd := &cobra.Command{
		Use:   "demo",
		Short: "tagpr run on the built-in configs/demo.yaml: synthetic data → tokenizer → model → chains → SFT → PRMU → RL → evaluation → report",
		Long: "The same as `tagpr run` without -c: the TagPR recipe end to end on the built-in synthetic personalization\n" +
			"benchmark, in --dir (default out/demo).\n\n" + runLong,
		Args: cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error {
			if cfgFile != "" {
				return fmt.Errorf("demo runs the built-in configs/demo.yaml; for another config use tagpr run -c %s", cfgFile)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error { return runStages(cmd, d) },
	}
	addStageFlags(demoCmd, &d, "dir")

	rootCmd.AddCommand(runCmd, demoCmd,
		stageCmd("sft", "Fine-tune the policy on the kept tagged chains (the sft stage)", pipeline.StageSFT),
		stageCmd("report", "Rebuild report.html, report.md, report.json and metrics.json from the run folder (the report stage)", pipeline.StageReport),
		rlCmd())
}

// stageCmd is a command that runs one stage of the config.
func stageCmd(use, short string, stage string) *cobra.Command {
	var o stageFlags
	c := &cobra.Command{
		Use:   use + " [-c FILE]",
		Short: short,
		Long:  short + ", in the config's out folder. The stages it reads must be done.\n\n" + runLong,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, args []string) error { return runStages(cmd, o, stage) },
	}
	addStageFlags(c, &o, "out")
	return c
}

func rlCmd() *cobra.Command {
	var o stageFlags
	var name string
	c := &cobra.Command{
		Use:   "rl [-c FILE] [--stage NAME]",
		Short: "Run one RL stage of the config (default: each in order)",
		Long:  "Runs RL stage NAME (GRPO family, TRL's knob names) from the model the stage before it left; the stages before it must be done.\n\n" + runLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			var only []string
			for _, st := range runCfg.Stages.RL {
				if name == "" || st.Name == name {
					only = append(only, pipeline.StageRL+":"+st.Name)
				}
			}
			if len(only) == 0 {
				names := make([]string, len(runCfg.Stages.RL))
				for i, st := range runCfg.Stages.RL {
					names[i] = st.Name
				}
				return fmt.Errorf("--stage %q: the config's RL stages are %v", name, names)
			}
			return runStages(cmd, o, only...)
		},
	}
	c.Flags().StringVar(&name, "stage", "", "RL stage name (stages.rl[].name)")
	addStageFlags(c, &o, "out")
	return c
}
