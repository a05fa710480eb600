package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline"
	"github.com/tagpr/tagpr/tokenize"
)

func init() {
	trainCmd := &cobra.Command{Use: "train", Short: "Fine-tune ONNX models on a stock ONNX Runtime (derived training graphs)"}
	trainCmd.AddCommand(trainLMCmd())
	rootCmd.AddCommand(trainCmd)
}

// trainLMOptions are the flags of `tagpr train lm`.
type trainLMOptions struct {
	Model, Data, Out, Tokenizer, Column string
	Steps, Batch, SeqLen, Accum         int
	CheckpointEvery, Warmup             int
	LR, WeightDecay, Clip               float64
	Schedule                            string
	LoRARank                            int
	LoRAAlpha                           float64
	LoRATargets, Trainable              []string
	Seed                                uint64
}

func trainLMCmd() *cobra.Command {
	var o trainLMOptions
	cmd := &cobra.Command{
		Use:   "lm --model DIR --data FILE --steps N --out DIR",
		Short: "Causal-LM fine-tuning (next-token loss) on a text set; leaves a checkpoint and model.onnx in --out",
		Long: `Fine-tunes a causal LM in the Optimum layout (a folder with model.onnx, or the file) on a data set
with a text column: Arrow IPC (.arrow/.ipc/.feather), Parquet (.parquet) or JSON lines (.jsonl, one
object per line). Texts are tokenized with tokenizer.json next to the model (or --tokenizer); a column
"input_ids" (list of ints) is used as is instead. Each text is cut into windows of --seq-len tokens.
With a "prompt" column beside the text (or "completion") column, each row is prompt + completion, cut
to --seq-len, and only the completion tokens are trained on (SFT). A tagged_chain file (from tagpr
chains) gives its kept chains (keep=true), each as its prompt messages and the chain as the assistant's
turn in the tokenizer's chat template; only the chain is trained on.

The loss per step goes to OUT/checkpoint/train_log.jsonl; checkpoints (safetensors weights and AdamW
moments, run state) to OUT/checkpoint/. Ctrl-C stops after the current step and saves a checkpoint;
rerunning the same command resumes bit for bit. At the end OUT/model.onnx is the trained model (LoRA
merged), with config.json and tokenizer files copied beside it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return runTrainLM(cmd.Context(), cmd, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Model, "model", "", "model folder (model.onnx, config.json, tokenizer.json) or .onnx file")
	f.StringVar(&o.Data, "data", "", "training data: .arrow, .ipc, .feather, .parquet or .jsonl")
	f.StringVar(&o.Out, "out", "", "output folder for checkpoints, the log and the exported model.onnx")
	f.StringVar(&o.Tokenizer, "tokenizer", "", "tokenizer.json (default: beside the model)")
	f.StringVar(&o.Column, "text-column", "text", "name of the text column")
	f.IntVar(&o.Steps, "steps", 100, "optimizer steps")
	f.IntVar(&o.Batch, "batch", 8, "sequences per micro-batch")
	f.IntVar(&o.SeqLen, "seq-len", 256, "tokens per sequence")
	f.IntVar(&o.Accum, "accum", 1, "micro-batches per step (gradient accumulation)")
	f.IntVar(&o.CheckpointEvery, "checkpoint-every", 50, "steps between checkpoints (and at the end / on Ctrl-C)")
	f.IntVar(&o.Warmup, "warmup", -1, "warmup steps (-1: 5% of --steps)")
	f.Float64Var(&o.LR, "lr", 3e-4, "peak learning rate")
	f.Float64Var(&o.WeightDecay, "weight-decay", 0, "AdamW decoupled weight decay (not on 1-D weights)")
	f.Float64Var(&o.Clip, "clip", 1, "global gradient-norm clipping (0: off)")
	f.StringVar(&o.Schedule, "schedule", "cosine", "decay after warmup: cosine, linear or constant")
	f.IntVar(&o.LoRARank, "lora-rank", 0, "train LoRA adapters of this rank instead of all weights (0: full fine-tuning)")
	f.Float64Var(&o.LoRAAlpha, "lora-alpha", 0, "LoRA alpha (scale alpha/rank; default 2·rank)")
	f.StringSliceVar(&o.LoRATargets, "lora-targets", nil, "weight-name patterns for LoRA (glob, or re:REGEXP; default: all MatMul/Gemm weights)")
	f.StringSliceVar(&o.Trainable, "trainable", nil, "weight-name patterns to train without LoRA (default: all)")
	f.Uint64Var(&o.Seed, "seed", 1, "seed for data order and LoRA init")
	return cmd
}

func (o trainLMOptions) validate() error {
	switch {
	case o.Model == "" || o.Data == "" || o.Out == "":
		return errors.New("train lm: --model, --data and --out are required")
	case o.Steps <= 0 || o.Batch <= 0 || o.SeqLen < 2 || o.Accum <= 0:
		return fmt.Errorf("train lm: --steps %d, --batch %d, --accum %d must be positive and --seq-len %d at least 2", o.Steps, o.Batch, o.Accum, o.SeqLen)
	case o.LoRARank < 0:
		return fmt.Errorf("train lm: --lora-rank %d is negative", o.LoRARank)
	}
	return nil
}

func runTrainLM(ctx context.Context, cmd *cobra.Command, o trainLMOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	if err := initRuntime(); err != nil {
		return err
	}
	modelPath, err := lm.ResolveModelPath(o.Model)
	if err != nil {
		return err
	}
	modelDir := filepath.Dir(modelPath)
	if filepath.Base(modelDir) == "onnx" && !trainFileExists(filepath.Join(modelDir, "config.json")) {
		modelDir = filepath.Dir(modelDir) // transformers.js layout: DIR/onnx/model.onnx, config beside onnx/
	}
	if err := checkPinned(modelPath, o.Data); err != nil {
		return err
	}
	m, err := ir.Load(modelPath)
	if err != nil {
		return err
	}
	hc, err := lm.ReadHFConfig(filepath.Join(modelDir, "config.json"))
	if err != nil {
		return err
	}
	rows, promptLen, err := trainingRows(o, modelDir, hc)
	if err != nil {
		return err
	}
	pad := int64(0)
	if hc != nil && len(hc.PadTokenID) > 0 {
		pad = hc.PadTokenID[0]
	}
	spec := train.LMTraining{Batch: int64(o.Batch), SeqLen: int64(o.SeqLen), Trainable: o.Trainable}
	if o.LoRARank > 0 {
		alpha := o.LoRAAlpha
		if alpha == 0 {
			alpha = 2 * float64(o.LoRARank)
		}
		spec.LoRA = &train.LoRA{Rank: o.LoRARank, Alpha: alpha, Targets: o.LoRATargets, Seed: o.Seed}
		spec.FrozenAsInputs = true // the frozen base stays in Go memory, out of the graph's protobuf
	}
	tg, adapters, err := train.BuildLMTraining(m, spec)
	if err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	warm := o.Warmup
	if warm < 0 {
		warm = o.Steps / 20
	}
	opts := train.TrainerOptions{
		Schedule:    train.Schedule{Peak: o.LR, Warmup: warm, Total: o.Steps, Decay: o.Schedule},
		WeightDecay: o.WeightDecay, ClipNorm: o.Clip, Session: sessionOptions(),
	}
	tr, err := train.NewTrainer(tg, opts)
	if err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	defer tr.Close()

	ckDir := filepath.Join(o.Out, "checkpoint")
	id := pipeline.NewTrainLMIdentity(modelPath, o.Data)
	id.Batch, id.SeqLen, id.Accum, id.LoRARank, id.Targets, id.Trainable, id.Seed = o.Batch, o.SeqLen, o.Accum, o.LoRARank, o.LoRATargets, o.Trainable, o.Seed
	if err := pipeline.CheckRunIdentity(ckDir, id, "use another --out (or delete "+ckDir+") to start over"); err != nil {
		return fmt.Errorf("train lm: %w", err)
	}
	bar := newProgress("train", o.Steps)
	loop := &train.Loop{
		Trainer: tr, Data: &train.LMDataset{Rows: rows, PromptLen: promptLen, SeqLen: o.SeqLen, Pad: pad, Graph: tg},
		BatchSize: o.Batch, Accum: o.Accum, Steps: o.Steps, Dir: ckDir, CheckpointEvery: o.CheckpointEvery, Seed: o.Seed,
		OnStep: func(s train.StepLog) {
			attrs := []any{"loss", strconv.FormatFloat(s.Loss, 'f', 4, 64), "lr", strconv.FormatFloat(s.LR, 'g', 3, 64)}
			if s.Skipped {
				attrs = append(attrs, "skipped", s.Reason)
			}
			bar.Step(1, attrs...)
		},
	}
	if st, err := train.LoadCheckpoint(ckDir, tr.Params, nil); err == nil && st.Step > 0 {
		fmt.Fprintf(cmd.ErrOrStderr(), "resuming from step %d in %s\n", st.Step, ckDir)
		bar.done = st.Step
	}
	st, err := loop.Run(ctx)
	bar.Finish()
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(cmd.ErrOrStderr(), "stopped after step %d; checkpoint in %s\n", st.Step, ckDir)
		}
		return err
	}
	out := filepath.Join(o.Out, "model.onnx")
	if err := train.Export(out, m, tr.Weights(), adapters); err != nil {
		return err
	}
	for _, name := range []string{"config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"} {
		if err := trainCopyIfExists(filepath.Join(modelDir, name), filepath.Join(o.Out, name)); err != nil {
			return err
		}
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trained %d steps on %d sequences (%d trainable tensors); log %s; model %s\n",
		st.Step, len(rows), len(tr.Params), filepath.Join(ckDir, train.LogFile), out)
	return nil
}

func trainFileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func trainCopyIfExists(src, dst string) error {
	b, err := os.ReadFile(src)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// trainingRows reads the data set (a tagged_chain file gives its kept
// chains in the chat template) and tokenizes it into rows of at most
// --seq-len tokens.
func trainingRows(o trainLMOptions, modelDir string, hc *lm.HFConfig) ([][]int64, []int, error) {
	d, err := datasets.ReadTextSet(o.Data, o.Column)
	if err != nil {
		return nil, nil, err
	}
	ro := pipeline.LMRowsOptions{Source: o.Data, SeqLen: o.SeqLen, EOS: -1, ModelConfig: filepath.Join(modelDir, "config.json")}
	if d.Texts != nil || d.Chats != nil {
		tokPath := o.Tokenizer
		if tokPath == "" {
			tokPath = filepath.Join(modelDir, "tokenizer.json")
		}
		if err := checkPinned(tokPath); err != nil {
			return nil, nil, err
		}
		if ro.Tok, err = tokenize.Load(tokPath); err != nil {
			return nil, nil, fmt.Errorf("train lm: tokenizer for %s: %w (or give an input_ids column)", o.Data, err)
		}
	}
	if hc != nil {
		if len(hc.EOSTokenID) > 0 {
			ro.EOS = hc.EOSTokenID[0]
		}
		ro.Vocab, ro.MaxPositions = hc.VocabSize, max(hc.MaxPositions, hc.NPositions)
	}
	rows, promptLen, err := pipeline.LMRows(d, ro)
	if err != nil {
		return nil, nil, fmt.Errorf("train lm: %w", err)
	}
	return rows, promptLen, nil
}
