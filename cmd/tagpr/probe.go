package main

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/probe"
)

func modelProbeCmd() *cobra.Command {
	var o probe.Options
	var out, batches string
	var force bool
	c := &cobra.Command{
		Use:   "probe PATH --out DIR [--force]",
		Short: "Run a fixed workload (logits, greedy ids, one training step's gradients, throughput) on the configured provider",
		Long: `Writes DIR/probe.json and DIR/tensors.safetensors (existing ones are kept unless --force): the logits
of a seeded batch, greedy ids after it, the loss and (sampled) gradients of one next-token training step,
generation tokens/s at each --gen-batches size and training tokens/s. Run it once per provider (--provider cpu, --provider cuda) with the same
flags and compare with ` + "`tagpr model probe-compare`" + ` (scripts/gpu/check.sh does both).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			for _, b := range strings.Split(batches, ",") {
				n, err := strconv.Atoi(strings.TrimSpace(b))
				if err != nil || n < 1 {
					return fmt.Errorf("--gen-batches %q: want positive integers separated by commas", batches)
				}
				o.GenBatches = append(o.GenBatches, n)
			}
			// probe.Options takes 0 for its default: a 0 given here would
			// silently become 32 tokens or 3 steps, so it is refused too.
			if err := checkFlags("model probe", atLeast("--new-tokens", o.NewTokens, 1), atLeast("--prompt-len", o.PromptLen, 1),
				atLeast("--train-batch", o.TrainBatch, 1), atLeast("--seq-len", o.SeqLen, 2),
				flagCheck{"--train-steps", o.TrainSteps, o.TrainSteps == -1 || o.TrainSteps >= 1, "≥ 1 timed steps, or -1 for no training"}); err != nil {
				return err
			}
			for _, f := range []string{probe.SummaryFile, probe.TensorsFile} {
				if err := refuseExisting(filepath.Join(out, f), force); err != nil {
					return err
				}
			}
			if err := initRuntime(); err != nil {
				return err
			}
			if err := checkPinned(args[0]); err != nil {
				return err
			}
			o.Session = sessionOptions()
			o.Log = func(format string, a ...any) { logLine("probe", fmt.Sprintf(format, a...)) }
			s, err := probe.Run(cmd.Context(), args[0], out, o)
			if err != nil {
				return err
			}
			if o.TrainSteps < 0 { // no training step: no params counted, no loss
				fmt.Fprintf(cmd.OutOrStdout(), "probe: %s on %s (onnxruntime %s): generation only (--train-steps -1: no training step, loss or gradients); wrote %s\n", args[0], s.Provider, s.Runtime, out)
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "probe: %s on %s (onnxruntime %s): %d params, loss %.6f; wrote %s\n", args[0], s.Provider, s.Runtime, s.Params, s.Loss, out)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&out, "out", "", "folder to write probe.json and tensors.safetensors into")
	f.BoolVar(&force, "force", false, "overwrite a probe already in --out")
	f.StringVar(&batches, "gen-batches", "1,8,32", "generation batch sizes to time")
	f.IntVar(&o.NewTokens, "new-tokens", 32, "tokens generated per row when timing")
	f.IntVar(&o.PromptLen, "prompt-len", 32, "prompt tokens per row when timing")
	f.IntVar(&o.TrainBatch, "train-batch", 4, "training batch (rows)")
	f.IntVar(&o.SeqLen, "seq-len", 64, "training sequence length")
	f.IntVar(&o.TrainSteps, "train-steps", 3, "timed training steps after the recorded one (≥ 1; -1: no training)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed of the token ids")
	f.BoolVar(&o.DeviceResident, "device-resident", false, "run generation and the timed training steps on the device-resident paths (automatic with --provider cuda) and record the bytes crossing per step")
	f.BoolVar(&o.Half, "half", false, "also generate with float16 MatMuls and compare with float32")
	c.MarkFlagRequired("out")
	return c
}

func modelProbeCompareCmd() *cobra.Command {
	var tol probe.Tolerances
	c := &cobra.Command{
		Use:   "probe-compare A B",
		Short: "Compare two probe folders (e.g. CPU A, CUDA B): logits, greedy ids, loss and gradients within tolerance, and speed",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := probe.Read(args[0])
			if err != nil {
				return err
			}
			b, err := probe.Read(args[1])
			if err != nil {
				return err
			}
			cmp, err := probe.Compare(a, b, tol)
			if err != nil {
				return err
			}
			fmt.Fprint(cmd.OutOrStdout(), cmp.Report(a, b))
			if len(cmp.Failures) > 0 {
				return fmt.Errorf("%s and %s differ beyond tolerance", args[0], args[1])
			}
			return nil
		},
	}
	f := c.Flags()
	f.Float64Var(&tol.Logits, "logits-tol", 1e-3, "largest accepted |Δ| of any logit")
	f.Float64Var(&tol.Grads, "grad-tol", 1e-3, "largest accepted |Δ| of a gradient element, relative to that gradient's largest element")
	f.Float64Var(&tol.Loss, "loss-tol", 1e-4, "largest accepted relative |Δ| of the training loss")
	f.Float64Var(&tol.Half, "half-tol", 0.02, "largest accepted |Δ| of a float16 logit from float32, relative to the largest logit (probes run with --half)")
	return c
}
