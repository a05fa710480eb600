package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/lock"
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
	Packing, Recompute                  bool
	MaxMemoryGB                         float64
	MaxSkipped                          int
	Fresh                               bool
}

func trainLMCmd() *cobra.Command {
	var o trainLMOptions
	cmd := &cobra.Command{
		Use:   "lm --model DIR --data FILE --steps N --out DIR",
		Short: "Causal-LM fine-tuning (next-token loss) on a text set; leaves a checkpoint and model.onnx in --out",
		Long: `Fine-tunes a causal LM in the Optimum layout (a folder with model.onnx, or the file) on a data set
with a text column: Arrow IPC (.arrow/.ipc/.feather), Parquet (.parquet) or JSON lines (.jsonl, one
object per line). Texts are tokenized with tokenizer.json next to the model (or --tokenizer), starting
with the BOS its post-processor adds (Llama, Mistral) as transformers' tokenizer(text) does, and end with
EOS; a column "input_ids" (list of ints) is used as is instead. Each text is cut into windows of --seq-len tokens.
With a "prompt" column beside the text (or "completion") column, each row is prompt + completion, cut
to --seq-len, and only the completion tokens are trained on (SFT). A tagged_chain file (from tagpr
chains) gives its kept chains (keep=true), each as its prompt messages and the chain as the assistant's
turn in the tokenizer's chat template; only the chain is trained on.

Weights go by their Hugging Face names (model.layers.0.self_attn.q_proj.weight), read from the graph's
structure: --trainable, --lora-targets, checkpoints and logs use them, and a tied lm head is one weight
with the embedding. The loss per step goes to OUT/checkpoint/train_log.jsonl; checkpoints (safetensors
weights and AdamW moments, run state) to OUT/checkpoint/. Ctrl-C stops after the current step and saves
a checkpoint; rerunning the same command resumes bit for bit. At the end OUT/model.onnx is the trained
model (LoRA merged), with config.json and tokenizer files copied beside it, and the same model as a
Hugging Face checkpoint (model.safetensors) that transformers loads; a LoRA run also writes its adapter
in PEFT's format to OUT/adapter (PeftModel.from_pretrained(base, "OUT/adapter")).

OUT/checkpoint/run.json records every setting that decides the result (learning rate, schedule,
clipping, batch, LoRA, seed, the sha256 of model, data and tokenizer, ...): a rerun with another one
is refused, naming it; --fresh discards the checkpoints (and the model an earlier run exported to OUT) and starts over. One process at a time
writes to OUT (a second one is refused, naming the first one's PID). A step whose loss or gradient
is not finite is skipped and logged; --max-skipped-steps such steps in a row stop the run.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			// --max-memory-gb sets runtime.max_memory_gb: left out, the
			// config's (or TAGPR_RUNTIME_MAX_MEMORY_GB) holds, as every
			// other runtime key does for every command.
			o.MaxMemoryGB = runCfg.Runtime.MaxMemoryGB
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
	f.IntVar(&o.Batch, "batch", 8, "sequences per micro-batch (with --packing: packed rows of --seq-len tokens)")
	f.IntVar(&o.SeqLen, "seq-len", 256, "tokens per sequence")
	f.IntVar(&o.Accum, "accum", 1, "micro-batches per step (gradient accumulation, each weighted by its loss tokens: the same step as one batch of --batch × --accum examples)")
	f.IntVar(&o.CheckpointEvery, "checkpoint-every", 50, "steps between checkpoints (and at the end / on Ctrl-C)")
	f.IntVar(&o.Warmup, "warmup", -1, "warmup steps (-1: 5% of --steps); warmup update k runs at (k+1)/N of --lr (transformers: k/N, from 0)")
	f.Float64Var(&o.LR, "lr", 3e-4, "peak learning rate")
	f.Float64Var(&o.WeightDecay, "weight-decay", 0, "AdamW decoupled weight decay (not on 1-D weights)")
	f.Float64Var(&o.Clip, "clip", 1, "global gradient-norm clipping (0: off)")
	f.StringVar(&o.Schedule, "schedule", "cosine", "decay after warmup: cosine, linear or constant")
	f.IntVar(&o.LoRARank, "lora-rank", 0, "train LoRA adapters of this rank instead of all weights (0: full fine-tuning)")
	f.Float64Var(&o.LoRAAlpha, "lora-alpha", 0, "LoRA alpha (scale alpha/rank; default 2·rank)")
	f.StringSliceVar(&o.LoRATargets, "lora-targets", nil, "linear layers to adapt, by Hugging Face module name: glob, re:REGEXP, or a name's last part as PEFT's target_modules (q_proj,v_proj); default: every attention and MLP projection, not the lm head")
	f.StringSliceVar(&o.Trainable, "trainable", nil, "modules (or weights) to train without LoRA, by Hugging Face name (model.layers.0.*, q_proj); default: all")
	f.Uint64Var(&o.Seed, "seed", 1, "seed for data order and LoRA init")
	f.Float64Var(&o.MaxMemoryGB, "max-memory-gb", 0, "refuse to start when the estimated peak memory exceeds this many GiB (runtime.max_memory_gb; 0: the memory free when it starts; -1: no check)")
	flagSetsKey(f, "max-memory-gb", "runtime.max_memory_gb")
	f.BoolVar(&o.Recompute, "recompute", false, "keep only each block's input from the forward pass and recompute the rest in the backward pass (less memory at long sequences, one more forward pass)")
	f.BoolVar(&o.Packing, "packing", false, "pack several sequences into each --seq-len row (attention stays inside each; needs a model with position_ids); --batch then counts packed rows, as TRL's packing does")
	f.IntVar(&o.MaxSkipped, "max-skipped-steps", train.DefaultMaxSkipped, "stop when this many steps in a row are skipped for a non-finite loss or gradient")
	f.BoolVar(&o.Fresh, "fresh", false, "discard the checkpoints in OUT/checkpoint (and the model an earlier run exported to OUT) and start over (instead of resuming)")
	return cmd
}

func (o trainLMOptions) validate() error {
	if o.Model == "" || o.Data == "" || o.Out == "" {
		return errors.New("train lm: --model, --data and --out are required")
	}
	err := checkFlags("train lm",
		atLeast("--steps", o.Steps, 1), atLeast("--batch", o.Batch, 1), atLeast("--seq-len", o.SeqLen, 2),
		atLeast("--accum", o.Accum, 1), atLeast("--checkpoint-every", o.CheckpointEvery, 1),
		flagCheck{"--warmup", o.Warmup, o.Warmup >= -1 && o.Warmup <= o.Steps, fmt.Sprintf("a step count in [0, --steps %d], or -1 for 5%% of --steps", o.Steps)},
		positive("--lr", o.LR), nonNegative("--weight-decay", o.WeightDecay), nonNegative("--clip", o.Clip),
		flagCheck{"--schedule", o.Schedule, o.Schedule == "cosine" || o.Schedule == "linear" || o.Schedule == "constant", "cosine, linear or constant"},
		atLeast("--lora-rank", o.LoRARank, 0), nonNegative("--lora-alpha", o.LoRAAlpha),
		atLeast("--max-skipped-steps", o.MaxSkipped, 1))
	if err != nil {
		return err
	}
	switch {
	case o.LoRARank > 0 && len(o.Trainable) > 0:
		return errors.New("train lm: --trainable with --lora-rank: a LoRA run trains its adapters only and keeps every base weight frozen; drop --trainable (choose the adapted modules with --lora-targets), or drop --lora-rank to fine-tune the weights --trainable names")
	case o.LoRARank == 0 && len(o.LoRATargets) > 0:
		return errors.New("train lm: --lora-targets without --lora-rank: nothing would be adapted; add --lora-rank (e.g. 8), or use --trainable to fine-tune those modules without LoRA")
	case o.LoRARank == 0 && o.LoRAAlpha != 0:
		return errors.New("train lm: --lora-alpha without --lora-rank: add --lora-rank (e.g. 8) for a LoRA run")
	}
	if err := train.ValidatePatterns(o.LoRATargets); err != nil {
		return fmt.Errorf("train lm: --lora-targets: %w", err)
	}
	if err := train.ValidatePatterns(o.Trainable); err != nil {
		return fmt.Errorf("train lm: --trainable: %w", err)
	}
	return nil
}

func runTrainLM(ctx context.Context, cmd *cobra.Command, o trainLMOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	// One writer per run folder, from the first file written to the last.
	lk, err := train.LockRunDir(o.Out)
	if err != nil {
		return fmt.Errorf("train lm: %w", err)
	}
	defer lk.Unlock()
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
	if err := checkPinned(append(lm.Files(modelPath), o.Data)...); err != nil {
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
	if err := nameWeights(cmd.ErrOrStderr(), m, modelPath, hc); err != nil {
		return err
	}
	rows, promptLen, err := trainingRows(o, modelDir, hc)
	if err != nil {
		return err
	}
	warnRepeats(cmd.ErrOrStderr(), o, rows)
	pad := int64(0)
	if hc != nil && len(hc.PadTokenID) > 0 {
		pad = hc.PadTokenID[0]
	}
	spec := train.LMTraining{Batch: int64(o.Batch), SeqLen: int64(o.SeqLen), Trainable: o.Trainable, Packed: o.Packing, Recompute: o.Recompute,
		Consume: true} // the export reloads the model
	if o.LoRARank > 0 {
		alpha := o.LoRAAlpha
		if alpha == 0 {
			alpha = 2 * float64(o.LoRARank)
		}
		spec.LoRA = &train.LoRA{Rank: o.LoRARank, Alpha: alpha, Targets: o.LoRATargets, Seed: o.Seed}
		spec.FrozenAsInputs = true // the frozen base stays in Go memory, out of the graph's protobuf
	}
	export := 2 * train.ModelBytes(m) // the export: model.onnx(.data) and model.safetensors
	tg, adapters, err := train.BuildLMTraining(m, spec)
	if err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	m = nil // the export reloads it: one copy of the weights fewer while training
	tg.ReleaseInitial = true
	describeSelection(cmd.ErrOrStderr(), map[bool]string{true: "--lora-targets", false: "--trainable"}[o.LoRARank > 0], tg.Selected)
	if err := checkTrainMemory(cmd, o, tg); err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	warm := o.Warmup
	if warm < 0 {
		warm = o.Steps / 20
	}
	opts := train.TrainerOptions{
		Schedule:    train.Schedule{Peak: o.LR, Warmup: warm, Total: o.Steps, Decay: o.Schedule},
		WeightDecay: o.WeightDecay, ClipNorm: o.Clip, Session: sessionOptions(), MaxSkipped: o.MaxSkipped,
	}
	settings, err := trainLMSettings(o, modelPath, modelDir, spec, warm)
	if err != nil {
		return err
	}
	if o.Fresh {
		if err := discardResult(o.Out, modelDir); err != nil {
			return fmt.Errorf("train lm: --fresh: %w", err)
		}
	}
	weights, st, err := trainLMSteps(ctx, cmd, o, modelPath, tg, opts, settings, rows, promptLen, pad, export)
	if err != nil {
		return err
	}
	// The training sessions, graph and moments are gone: the export below
	// (the model reloaded, the weights written into it) fits in what the
	// steps used, as the memory estimate says.
	debug.FreeOSMemory()
	if m, err = ir.Load(modelPath); err != nil {
		return err
	}
	if err := nameWeights(io.Discard, m, modelPath, hc); err != nil {
		return err
	}
	out, err := writeTrainedModel(cmd.OutOrStdout(), o.Out, modelDir, m, weights, adapters)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trained %d steps of %s (%d trainable tensors); log %s; model %s\n",
		st.Step, drawnPerStep(o, rows), len(weights), filepath.Join(o.Out, "checkpoint", train.LogFile), out)
	return nil
}

// drawnPerStep says what each step trained on: with --packing, --batch
// counts packed rows (as TRL's per_device_train_batch_size does), drawn
// from the rows the sequences were packed into.
func drawnPerStep(o trainLMOptions, rows [][]int64) string {
	if !o.Packing {
		return fmt.Sprintf("%d sequences (--batch %d × --accum %d) drawn from %d", o.Batch*o.Accum, o.Batch, o.Accum, len(rows))
	}
	return fmt.Sprintf("%d packed rows of %d tokens (--batch %d × --accum %d) drawn from the %d rows %d sequences were packed into",
		o.Batch*o.Accum, o.SeqLen, o.Batch, o.Accum, drawPool(o, rows), len(rows))
}

// drawPool is how many rows steps draw from: the sequences, or with
// --packing the rows they are packed into.
func drawPool(o trainLMOptions, rows [][]int64) int {
	if !o.Packing {
		return len(rows)
	}
	lens := make([]int, len(rows))
	for i, r := range rows {
		lens[i] = len(r)
	}
	return len(train.PackRows(lens, o.SeqLen))
}

// warnRepeats warns when a step holds more rows than the data has: steps
// have a fixed size, so every step then holds some rows twice (their loss
// counting double), where transformers' Trainer makes a smaller batch.
func warnRepeats(w io.Writer, o trainLMOptions, rows [][]int64) {
	n, step := drawPool(o, rows), o.Batch*o.Accum
	if step <= n {
		return
	}
	unit := "sequences"
	if o.Packing {
		unit = "packed rows"
	}
	fmt.Fprintf(w, "warning: a step holds %d %s (--batch %d × --accum %d) but the data has %d: every step holds some of them twice, their loss counting double; lower --batch or --accum to fit %d\n",
		step, unit, o.Batch, o.Accum, n, n)
}

// checkTrainMemory prints the run's peak-memory estimate and refuses a run
// that would not fit (see --max-memory-gb).
func checkTrainMemory(cmd *cobra.Command, o trainLMOptions, tg *train.TrainingGraph) error {
	est := train.EstimateMemory(tg)
	fmt.Fprintf(cmd.ErrOrStderr(), "memory estimate: %s\n", est)
	limit, check, err := train.MemoryLimit(o.MaxMemoryGB)
	if err != nil {
		return fmt.Errorf("%w (--max-memory-gb sets the limit; -1 skips the check)", err)
	}
	if !check {
		return nil
	}
	knobs := train.MemoryKnobs{Batch: "--batch", SeqLen: "--seq-len"}
	if o.LoRARank == 0 {
		knobs.LoRA = "--lora-rank"
	}
	if err := est.Fits(limit, knobs); err != nil {
		return fmt.Errorf("%w (--max-memory-gb sets another limit; -1 skips the check)", err)
	}
	return nil
}

// trainLMSettings are the settings that decide a train lm run's result:
// a resume must have the same (the checkpoint interval, threads and
// skip tolerance may change). Inputs count by content, not path.
func trainLMSettings(o trainLMOptions, modelPath, modelDir string, spec train.LMTraining, warmup int) (train.RunSettings, error) {
	s := train.RunSettings{}.Set("steps", o.Steps).Set("batch", o.Batch).Set("seq_len", o.SeqLen).Set("accum", o.Accum).
		Set("lr", o.LR).Set("warmup", warmup).Set("schedule", o.Schedule).Set("clip", o.Clip).Set("weight_decay", o.WeightDecay).
		Set("trainable", o.Trainable).Set("seed", o.Seed).Set("text_column", o.Column).Set("packing", o.Packing)
	if spec.LoRA != nil {
		s.Set("lora_rank", spec.LoRA.Rank).Set("lora_alpha", spec.LoRA.Alpha).Set("lora_targets", spec.LoRA.Targets)
	}
	inputs := map[string]string{"model_sha256": modelPath, "data_sha256": o.Data}
	for _, f := range lm.Files(modelPath)[1:] { // external data, config.json, generation_config.json
		name := strings.NewReplacer(".onnx.data", "_data", ".onnx_data", "_data", ".json", "").Replace(filepath.Base(f))
		inputs[name+"_sha256"] = f
	}
	if tok := trainTokenizerPath(o, modelDir); trainFileExists(tok) {
		for _, f := range tokenize.Files(tok) {
			switch filepath.Base(f) {
			case "tokenizer_config.json":
				inputs["tokenizer_config_sha256"] = f
			case "chat_template.jinja":
				inputs["chat_template_sha256"] = f
			default:
				inputs["tokenizer_sha256"] = f
			}
		}
	}
	for name, path := range inputs {
		sum, _, err := lock.HashFile(path)
		if err != nil {
			return nil, fmt.Errorf("train lm: %w", err)
		}
		s[name] = sum
	}
	return s, nil
}

// trainTokenizerPath is --tokenizer, or the tokenizer.json beside the model.
func trainTokenizerPath(o trainLMOptions, modelDir string) string {
	if o.Tokenizer != "" {
		return o.Tokenizer
	}
	return filepath.Join(modelDir, "tokenizer.json")
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
	return renameio.WriteFile(dst, b, 0o644) // whole or not at all: a full disk leaves no cut adapter
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
		if ro.Tok, err = loadTokenizer(trainTokenizerPath(o, modelDir)); err != nil {
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
	// A prompt/completion row or chat gives one row, or none when its
	// prompt fills --seq-len: those were left out without a word.
	if n := max(len(d.Chats), len(d.Prompts)); n > len(rows) {
		stderrLine(fmt.Sprintf("train lm: %d of %d examples of %s left out: the prompt fills --seq-len %d, leaving nothing to train on (a longer --seq-len keeps them)",
			n-len(rows), n, o.Data, o.SeqLen))
	}
	return rows, promptLen, nil
}

// trainLMSteps runs train lm's steps on tg (resuming from OUT/checkpoint)
// and returns the trained weights; the trainer and its sessions are closed
// when it returns, so the export that follows (export bytes, counted in the
// loop's disk check) has their memory.
func trainLMSteps(ctx context.Context, cmd *cobra.Command, o trainLMOptions, modelPath string, tg *train.TrainingGraph, opts train.TrainerOptions,
	settings train.RunSettings, rows [][]int64, promptLen []int, pad, export int64) (map[string][]float32, train.RunState, error) {
	tr, err := train.NewTrainer(tg, opts)
	if err != nil {
		return nil, train.RunState{}, fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	defer tr.Close()

	ckDir := filepath.Join(o.Out, "checkpoint")
	if o.Fresh {
		if err := os.RemoveAll(ckDir); err != nil {
			return nil, train.RunState{}, fmt.Errorf("train lm: --fresh: %w", err)
		}
	}
	if _, err := train.LatestCheckpoint(ckDir); err == nil {
		if err := settings.Check(ckDir); err != nil {
			return nil, train.RunState{}, fmt.Errorf("train lm: %w; rerun with the recorded settings to resume, or add --fresh to start over", err)
		}
	}
	bar := newProgress("train", o.Steps)
	loop := &train.Loop{
		Trainer: tr, Data: &train.LMDataset{Rows: rows, PromptLen: promptLen, SeqLen: o.SeqLen, Pad: pad, Graph: tg, Packed: o.Packing},
		BatchSize: o.Batch, Accum: o.Accum, Steps: o.Steps, Dir: ckDir, CheckpointEvery: o.CheckpointEvery, Seed: o.Seed,
		Settings: settings, ExportBytes: export,
		Progress: func(p train.Progress) {
			if p.Note != "" {
				return
			}
			attrs := []any{"loss", strconv.FormatFloat(p.Metrics["loss"], 'f', 4, 64), "lr", strconv.FormatFloat(p.Metrics["learning_rate"], 'g', 3, 64)}
			if p.Metrics["skipped"] == 1 {
				attrs = append(attrs, "skipped", "yes")
			}
			bar.Step(1, attrs...)
			if p.Warning != "" {
				logLine("train", fmt.Sprintf("warning: step %d: %s", p.Step, p.Warning))
			}
		},
	}
	if st, err := train.LoadCheckpoint(ckDir, tr.Params, nil); err == nil && st.Step > 0 {
		logLine("train", fmt.Sprintf("resuming from step %d in %s", st.Step, ckDir))
		bar.done, bar.base = st.Step, st.Step // the ETA is over this process's steps
	}
	// On a GPU, weights and AdamW moments stay on the device between steps.
	if loop.Device, err = train.DeviceTrainerFor(tr, opts.Session); err != nil {
		return nil, train.RunState{}, fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	defer loop.Device.Close()
	st, err := loop.Run(ctx)
	bar.Finish()
	if err != nil {
		var div *train.DivergedError
		switch {
		case errors.Is(err, context.Canceled):
			fmt.Fprintf(cmd.ErrOrStderr(), "stopped after step %d; checkpoint in %s\n", st.Step, ckDir)
		case errors.As(err, &div):
			return nil, train.RunState{}, fmt.Errorf("train lm: %w; nothing was exported (lower --lr, or raise --max-skipped-steps to tolerate more)", err)
		}
		return nil, st, err
	}
	return tr.Weights(), st, nil
}
