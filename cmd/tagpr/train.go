package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/spf13/cobra"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
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
to --seq-len, and only the completion tokens are trained on (SFT).

Weights go by their Hugging Face names (model.layers.0.self_attn.q_proj.weight), read from the graph's
structure: --trainable, --lora-targets, checkpoints and logs use them, and a tied lm head is one weight
with the embedding. The loss per step goes to OUT/checkpoint/train_log.jsonl; checkpoints (safetensors
weights and AdamW moments, run state) to OUT/checkpoint/. Ctrl-C stops after the current step and saves
a checkpoint; rerunning the same command resumes bit for bit. At the end OUT/model.onnx is the trained
model (LoRA merged), with config.json and tokenizer files copied beside it, and the same model as a
Hugging Face checkpoint (model.safetensors) that transformers loads; a LoRA run also writes its adapter
in PEFT's format to OUT/adapter (PeftModel.from_pretrained(base, "OUT/adapter")).`,
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
	f.StringSliceVar(&o.LoRATargets, "lora-targets", nil, "linear layers to adapt, by Hugging Face module name: glob, re:REGEXP, or a name's last part as PEFT's target_modules (q_proj,v_proj); default: every attention and MLP projection, not the lm head")
	f.StringSliceVar(&o.Trainable, "trainable", nil, "modules (or weights) to train without LoRA, by Hugging Face name (model.layers.0.*, q_proj); default: all")
	f.Uint64Var(&o.Seed, "seed", 1, "seed for data order and LoRA init")
	f.Float64Var(&o.MaxMemoryGB, "max-memory-gb", 0, "refuse to start when the estimated peak memory exceeds this many GiB (0: the machine's memory; -1: no check)")
	f.BoolVar(&o.Recompute, "recompute", false, "keep only each block's input from the forward pass and recompute the rest in the backward pass (less memory at long sequences, one more forward pass)")
	f.BoolVar(&o.Packing, "packing", false, "pack several sequences into each --seq-len row (attention stays inside each; needs a model with position_ids)")
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
	if err := nameWeights(cmd.ErrOrStderr(), m, modelPath); err != nil {
		return err
	}
	hc, err := lm.ReadHFConfig(filepath.Join(modelDir, "config.json"))
	if err != nil {
		return err
	}
	rows, promptLen, err := loadTrainingRows(o, modelDir, hc)
	if err != nil {
		return err
	}
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
	tg, adapters, err := train.BuildLMTraining(m, spec)
	if err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	m = nil // the export reloads it: one copy of the weights fewer while training
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
		WeightDecay: o.WeightDecay, ClipNorm: o.Clip, Session: sessionOptions(),
	}
	tr, err := train.NewTrainer(tg, opts)
	if err != nil {
		return fmt.Errorf("train lm %s: %w", modelPath, err)
	}
	defer tr.Close()

	ckDir := filepath.Join(o.Out, "checkpoint")
	if err := checkRunIdentity(ckDir, o, modelPath); err != nil {
		return err
	}
	bar := newProgress("train", o.Steps)
	loop := &train.Loop{
		Trainer: tr, Data: &train.LMDataset{Rows: rows, PromptLen: promptLen, SeqLen: o.SeqLen, Pad: pad, Graph: tg, Packed: o.Packing},
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
	if m, err = ir.Load(modelPath); err != nil {
		return err
	}
	if err := nameWeights(io.Discard, m, modelPath); err != nil {
		return err
	}
	out, err := writeTrainedModel(cmd.OutOrStdout(), o.Out, modelDir, m, tr.Weights(), adapters)
	if err != nil {
		return err
	}
	fmt.Fprintf(cmd.OutOrStdout(), "trained %d steps on %d sequences (%d trainable tensors); log %s; model %s\n",
		st.Step, len(rows), len(tr.Params), filepath.Join(ckDir, train.LogFile), out)
	return nil
}

// checkTrainMemory prints the run's peak-memory estimate and refuses a run
// that would not fit (see --max-memory-gb).
func checkTrainMemory(cmd *cobra.Command, o trainLMOptions, tg *train.TrainingGraph) error {
	est := train.EstimateMemory(tg)
	fmt.Fprintf(cmd.ErrOrStderr(), "memory estimate: %s\n", est)
	if o.MaxMemoryGB < 0 {
		return nil
	}
	limit := int64(o.MaxMemoryGB * (1 << 30))
	if limit == 0 {
		var err error
		if limit, err = train.MachineMemory(); err != nil {
			return fmt.Errorf("%w (--max-memory-gb sets the limit; -1 skips the check)", err)
		}
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

// trainRunIdentity is what a resumed run must share with the run that made the checkpoint.
type trainRunIdentity struct {
	Model     string   `json:"model"`
	ModelSize int64    `json:"model_size"`
	Data      string   `json:"data"`
	DataSize  int64    `json:"data_size"`
	Batch     int      `json:"batch"`
	SeqLen    int      `json:"seq_len"`
	Accum     int      `json:"accum"`
	LoRARank  int      `json:"lora_rank"`
	Targets   []string `json:"lora_targets,omitempty"`
	Trainable []string `json:"trainable,omitempty"`
	Seed      uint64   `json:"seed"`
	Packing   bool     `json:"packing,omitempty"`
}

// checkRunIdentity writes OUT/checkpoint/run.json on a first run and refuses
// to resume a checkpoint made from another model, data set or batch layout.
func checkRunIdentity(ckDir string, o trainLMOptions, modelPath string) error {
	id := trainRunIdentity{Model: trainAbsPath(modelPath), Data: trainAbsPath(o.Data), Batch: o.Batch, SeqLen: o.SeqLen, Accum: o.Accum,
		LoRARank: o.LoRARank, Targets: o.LoRATargets, Trainable: o.Trainable, Seed: o.Seed, Packing: o.Packing}
	if st, err := os.Stat(modelPath); err == nil {
		id.ModelSize = st.Size()
	}
	if st, err := os.Stat(o.Data); err == nil {
		id.DataSize = st.Size()
	}
	want, _ := json.MarshalIndent(id, "", "  ")
	p := filepath.Join(ckDir, "run.json")
	have, err := os.ReadFile(p)
	if err == nil {
		if !bytes.Equal(bytes.TrimSpace(have), bytes.TrimSpace(want)) {
			return fmt.Errorf("train lm: %s was made by a run with other settings:\n%s\nthis run:\n%s\nuse another --out (or delete %s) to start over", p, have, want, ckDir)
		}
		return nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("train lm: %w", err)
	}
	if err := os.MkdirAll(ckDir, 0o755); err != nil {
		return fmt.Errorf("train lm: %w", err)
	}
	return os.WriteFile(p, append(want, '\n'), 0o644)
}

func trainAbsPath(p string) string {
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
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

// loadTrainingRows reads the data set and turns it into token rows of at
// most seq-len tokens (each text ends with EOS when the config names one).
// Plain texts are cut into windows; prompt/completion rows are truncated
// and their prompt tokens are not targets (promptLen, nil without prompts).
func loadTrainingRows(o trainLMOptions, modelDir string, hc *lm.HFConfig) (rows [][]int64, promptLen []int, err error) {
	d, err := readTrainTexts(o.Data, o.Column)
	if err != nil {
		return nil, nil, err
	}
	ids := d.ids
	var prompts [][]int64
	if d.texts != nil {
		tokPath := o.Tokenizer
		if tokPath == "" {
			tokPath = filepath.Join(modelDir, "tokenizer.json")
		}
		if err := checkPinned(tokPath); err != nil {
			return nil, nil, err
		}
		tok, err := tokenize.Load(tokPath)
		if err != nil {
			return nil, nil, fmt.Errorf("train lm: tokenizer for %d texts of %s: %w (or give an input_ids column)", len(d.texts), o.Data, err)
		}
		enc := func(s string) []int64 {
			e := tok.Encode(s)
			row := make([]int64, len(e))
			for i, x := range e {
				row[i] = int64(x)
			}
			return row
		}
		for i, t := range d.texts {
			ids = append(ids, enc(t))
			if d.prompts != nil {
				prompts = append(prompts, enc(d.prompts[i]))
			}
		}
	}
	var eos int64 = -1
	if hc != nil && len(hc.EOSTokenID) > 0 {
		eos = hc.EOSTokenID[0]
	}
	skipped := 0
	for i, r := range ids {
		if eos >= 0 && (len(r) == 0 || r[len(r)-1] != eos) {
			r = append(r, eos)
		}
		if prompts != nil {
			p := prompts[i]
			row := append(append([]int64{}, p...), r...)
			if len(p) >= min(len(row), o.SeqLen) {
				skipped++ // the prompt fills the window: nothing to learn
				continue
			}
			rows = append(rows, row[:min(len(row), o.SeqLen)])
			promptLen = append(promptLen, len(p))
			continue
		}
		for start := 0; start < len(r); start += o.SeqLen {
			end := min(start+o.SeqLen, len(r))
			if end-start >= 2 {
				rows = append(rows, r[start:end])
			}
		}
	}
	if len(rows) == 0 {
		if skipped > 0 {
			return nil, nil, fmt.Errorf("train lm: every prompt of %s is at least --seq-len %d tokens long", o.Data, o.SeqLen)
		}
		return nil, nil, fmt.Errorf("train lm: %s holds no text of 2 tokens or more", o.Data)
	}
	if hc != nil {
		if maxPos := max(hc.MaxPositions, hc.NPositions); maxPos > 0 && o.SeqLen > maxPos {
			return nil, nil, fmt.Errorf("train lm: --seq-len %d is longer than the model's %d positions (%s)", o.SeqLen, maxPos, filepath.Join(modelDir, "config.json"))
		}
		if hc.VocabSize > 0 {
			for i, r := range rows {
				for _, id := range r {
					if id < 0 || id >= int64(hc.VocabSize) {
						return nil, nil, fmt.Errorf("train lm: token id %d (sequence %d of %s) is outside the model's vocab of %d (%s): tokenizer and model do not match",
							id, i, o.Data, hc.VocabSize, filepath.Join(modelDir, "config.json"))
					}
				}
			}
		}
	}
	return rows, promptLen, nil
}

// trainData is a data set's rows: texts (with optional prompts) or
// pre-tokenized ids.
type trainData struct {
	texts, prompts []string
	ids            [][]int64
}

// readTrainTexts reads a text column (with a "prompt" column beside it when
// there is one; the text column then defaults to "completion" if "text" is
// absent) or, when the file has one, an "input_ids" list column.
func readTrainTexts(path, column string) (trainData, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".jsonl", ".json", ".ndjson":
		return readTrainJSONL(path, column)
	case ".arrow", ".ipc", ".feather", ".parquet", ".pq":
		return readTrainArrowColumn(path, column)
	}
	return trainData{}, fmt.Errorf("read %s: unknown extension (want .arrow, .ipc, .feather, .parquet or .jsonl)", path)
}

func readTrainJSONL(path, column string) (trainData, error) {
	var d trainData
	f, err := os.Open(path)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	str := func(line int, obj map[string]json.RawMessage, key string) (string, error) {
		var s string
		if e := json.Unmarshal(obj[key], &s); e != nil {
			return "", fmt.Errorf("read %s: line %d: %q is not a string: %v", path, line, key, e)
		}
		return s, nil
	}
	withPrompt := -1 // unknown until the first row
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(b)) > 0 {
			var obj map[string]json.RawMessage
			if e := json.Unmarshal(b, &obj); e != nil {
				return d, fmt.Errorf("read %s: line %d: not a JSON object: %v", path, line, e)
			}
			col := column
			if _, ok := obj[col]; !ok && col == "text" {
				if _, ok := obj["completion"]; ok {
					col = "completion"
				}
			}
			_, hasPrompt := obj["prompt"]
			if raw, ok := obj["input_ids"]; ok {
				var row []int64
				if e := json.Unmarshal(raw, &row); e != nil {
					return d, fmt.Errorf("read %s: line %d: input_ids: %v", path, line, e)
				}
				d.ids = append(d.ids, row)
			} else if _, ok := obj[col]; ok {
				s, e := str(line, obj, col)
				if e != nil {
					return d, e
				}
				d.texts = append(d.texts, s)
				if withPrompt < 0 {
					withPrompt = map[bool]int{false: 0, true: 1}[hasPrompt]
				}
				if hasPrompt != (withPrompt == 1) {
					return d, fmt.Errorf("read %s: line %d: some rows have a \"prompt\" and some do not", path, line)
				}
				if hasPrompt {
					p, e := str(line, obj, "prompt")
					if e != nil {
						return d, e
					}
					d.prompts = append(d.prompts, p)
				}
			} else {
				return d, fmt.Errorf("read %s: line %d: no %q (or input_ids) field", path, line, column)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return d, fmt.Errorf("read %s: %w", path, err)
		}
	}
	if d.texts != nil && d.ids != nil {
		return d, fmt.Errorf("read %s: mixes %q and input_ids lines", path, column)
	}
	if d.texts == nil && d.ids == nil {
		return d, fmt.Errorf("read %s: no rows", path)
	}
	return d, nil
}

func readTrainArrowColumn(path, column string) (trainData, error) {
	var d trainData
	f, err := os.Open(path)
	if err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	defer f.Close()
	var recs []arrow.RecordBatch
	var schema *arrow.Schema
	head := make([]byte, 6)
	n, _ := io.ReadFull(f, head)
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return d, fmt.Errorf("read %s: %w", path, err)
	}
	switch {
	case n >= 4 && string(head[:4]) == "PAR1":
		pr, err := file.NewParquetReader(f)
		if err != nil {
			return d, fmt.Errorf("read %s: parquet (truncated or damaged?): %w", path, err)
		}
		defer pr.Close()
		fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: 4096}, memory.DefaultAllocator)
		if err != nil {
			return d, fmt.Errorf("read %s: parquet: %w", path, err)
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			return d, fmt.Errorf("read %s: parquet: %w", path, err)
		}
		defer rr.Release()
		schema = rr.Schema()
		for rr.Next() {
			rec := rr.RecordBatch()
			rec.Retain()
			recs = append(recs, rec)
		}
		if err := rr.Err(); err != nil && !errors.Is(err, io.EOF) {
			return d, fmt.Errorf("read %s: parquet: %w", path, err)
		}
	case n == 6 && string(head) == "ARROW1":
		r, err := ipc.NewFileReader(f)
		if err != nil {
			return d, fmt.Errorf("read %s: arrow ipc file (truncated or damaged?): %w", path, err)
		}
		defer r.Close()
		schema = r.Schema()
		for i := 0; i < r.NumRecords(); i++ {
			rec, err := r.RecordBatch(i)
			if err != nil {
				return d, fmt.Errorf("read %s: batch %d: %w", path, i, err)
			}
			rec.Retain()
			recs = append(recs, rec)
		}
	default:
		r, err := ipc.NewReader(f)
		if err != nil {
			return d, fmt.Errorf("read %s: neither Parquet nor Arrow IPC: %w", path, err)
		}
		defer r.Release()
		schema = r.Schema()
		for r.Next() {
			rec := r.RecordBatch()
			rec.Retain()
			recs = append(recs, rec)
		}
		if err := r.Err(); err != nil {
			return d, fmt.Errorf("read %s: arrow stream: %w", path, err)
		}
	}
	defer func() {
		for _, r := range recs {
			r.Release()
		}
	}()
	name := column
	if idx := schema.FieldIndices("input_ids"); len(idx) > 0 {
		name = "input_ids"
	} else if len(schema.FieldIndices(name)) == 0 && name == "text" && len(schema.FieldIndices("completion")) > 0 {
		name = "completion"
	}
	idx := schema.FieldIndices(name)
	if len(idx) == 0 {
		return d, fmt.Errorf("read %s: no column %q (or input_ids); columns: %v", path, column, schema)
	}
	promptIdx := schema.FieldIndices("prompt")
	strs := func(col arrow.Array, name string) ([]string, error) {
		var out []string
		switch c := col.(type) {
		case *array.String:
			for i := 0; i < c.Len(); i++ {
				out = append(out, c.Value(i)) // a null reads as ""
			}
		case *array.LargeString:
			for i := 0; i < c.Len(); i++ {
				out = append(out, c.Value(i))
			}
		default:
			return nil, fmt.Errorf("read %s: column %q is %s, want a string", path, name, col.DataType())
		}
		return out, nil
	}
	for _, rec := range recs {
		col := rec.Column(idx[0])
		if l, ok := col.(array.ListLike); ok && name == "input_ids" {
			for i := 0; i < l.Len(); i++ {
				if !l.IsValid(i) {
					continue
				}
				s, e := l.ValueOffsets(i)
				row := make([]int64, 0, e-s)
				for k := s; k < e; k++ {
					switch v := l.ListValues().(type) {
					case *array.Int64:
						row = append(row, v.Value(int(k)))
					case *array.Int32:
						row = append(row, int64(v.Value(int(k))))
					default:
						return d, fmt.Errorf("read %s: column %q holds lists of %s, want int32/int64", path, name, v.DataType())
					}
				}
				d.ids = append(d.ids, row)
			}
			continue
		}
		texts, err := strs(col, name)
		if err != nil {
			return d, err
		}
		d.texts = append(d.texts, texts...)
		if len(promptIdx) > 0 {
			ps, err := strs(rec.Column(promptIdx[0]), "prompt")
			if err != nil {
				return d, err
			}
			d.prompts = append(d.prompts, ps...)
		}
	}
	if d.texts == nil && d.ids == nil {
		return d, fmt.Errorf("read %s: no rows", path)
	}
	return d, nil
}
