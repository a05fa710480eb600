package pipeline

import (
	"context"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"runtime/debug"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/onnx/train"
)

// Sequence is one SFT example: prompt followed by the target, as token ids.
type Sequence struct {
	IDs       []int64
	PromptLen int // the first PromptLen tokens are context, not targets
	// ProfileKept of ProfileRetrieved profile items are in the prompt
	// (EncodeChainSFT: the rest were dropped to fit).
	ProfileKept, ProfileRetrieved int
}

// SFTConfig sizes supervised fine-tuning.
type SFTConfig struct {
	// Steps is the optimizer updates; each trains on Batch sequences
	// (rows), each right-padded or cut to SeqLen tokens.
	Steps  int `mapstructure:"steps"`
	Batch  int `mapstructure:"batch"`
	SeqLen int `mapstructure:"seq_len"`
	// LR is AdamW's peak rate, reached after Warmup updates (update k < W
	// at (k+1)/W of it) and decayed by a cosine to a tenth of it at Steps
	// (transformers' cosine_with_min_lr with min_lr_rate 0.1).
	LR     float64 `mapstructure:"lr"`
	Warmup int     `mapstructure:"warmup"`
	// WeightDecay is AdamW's (biases and norm gains are exempt); Clip
	// clips the global gradient norm (0: no clipping).
	WeightDecay float64 `mapstructure:"weight_decay"`
	Clip        float64 `mapstructure:"clip"`
	// CheckpointEvery is in steps (0: only at the end and when cancelled);
	// Seed seeds the shuffling of the sequences.
	CheckpointEvery int    `mapstructure:"checkpoint_every"`
	Seed            uint64 `mapstructure:"seed"`
	// Packing puts several sequences in each row of seq_len tokens (as TRL's
	// packing): attention stays inside each sequence, less padding. Batch
	// then counts packed rows, as TRL's per_device_train_batch_size does.
	Packing bool `mapstructure:"packing"`
	// LoRASettings train adapters instead of every weight (lora_rank > 0).
	LoRASettings `mapstructure:",squash"`
	// GradientCheckpointing recomputes each layer's activations in the
	// backward pass (as train lm --recompute, transformers'
	// gradient_checkpointing): the step's activations shrink to about one
	// layer's, for one more forward pass. Gradients are unchanged.
	GradientCheckpointing bool `mapstructure:"gradient_checkpointing"`
	// Session is the runtime the training session runs on.
	Session ort.Options `mapstructure:"-"`
	// MaxMemoryGB is runtime.max_memory_gb (0: the memory free when it starts; -1:
	// no check).
	MaxMemoryGB float64 `mapstructure:"-"`
	// ConsumeModel builds the training graph from the model itself
	// (train.LMTraining.Consume): one copy of the weights fewer while
	// training, for a caller that reloads the model to export it.
	ConsumeModel bool `mapstructure:"-"`
	// ExportBytes is what the caller writes beside the checkpoints after
	// training (the trained model), counted in the disk check
	// (train.Loop.ExportBytes).
	ExportBytes int64 `mapstructure:"-"`
}

// Validate refuses sizes that cannot train.
func (c SFTConfig) Validate() error {
	switch {
	case c.Steps < 1 || c.Batch < 1 || c.SeqLen < 2:
		return fmt.Errorf("sft: steps %d, batch %d, seq_len %d: want steps ≥ 1, batch ≥ 1, seq_len ≥ 2", c.Steps, c.Batch, c.SeqLen)
	case !(c.LR > 0) || math.IsInf(c.LR, 0):
		return fmt.Errorf("sft: lr %v: want a finite value > 0", c.LR)
	case c.CheckpointEvery < 0 || c.Warmup < 0:
		return fmt.Errorf("sft: checkpoint_every %d, warmup %d: want ≥ 0", c.CheckpointEvery, c.Warmup)
	case !(c.WeightDecay >= 0) || !(c.Clip >= 0) || math.IsInf(c.WeightDecay, 0) || math.IsInf(c.Clip, 0):
		return fmt.Errorf("sft: weight_decay %v, clip %v: want finite values ≥ 0", c.WeightDecay, c.Clip)
	}
	if err := c.LoRASettings.validate(); err != nil {
		return fmt.Errorf("sft: %w", err)
	}
	return nil
}

// SFTResult is what a finished SFT stage leaves.
type SFTResult struct {
	Weights map[string][]float32 // the trained weights, by initializer name
	// Adapters are a LoRA run's: Weights hold their A and B, merged on export.
	Adapters  []train.Adapter
	Steps     int
	FinalLoss float64
	Seconds   float64
}

// TrainSFT fine-tunes every float weight of model (with cfg.Rank > 0: LoRA
// adapters on its linear layers instead) on data with masked
// next-token cross-entropy (prompt tokens are not targets), through
// onnx/train's loop: checkpoints and the step log (train_log.jsonl) go to
// dir, a rerun resumes bit for bit, and cancelling ctx leaves a checkpoint
// and returns ctx.Err(). dir "" keeps nothing (a cancelled run is lost).
// pad fills rows shorter than cfg.SeqLen; progress (may be nil) hears of the
// memory estimate and of every step.
func TrainSFT(ctx context.Context, model *onnxpb.ModelProto, data []Sequence, pad int64, cfg SFTConfig, dir string, progress train.ProgressFunc) (*SFTResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if model == nil {
		return nil, errors.New("sft: no model")
	}
	if len(data) == 0 {
		return nil, errors.New("sft: no training sequences")
	}
	// ORT's Gather reads a negative id from the end of the embedding: a
	// wrong token, trained on without a word.
	for i, s := range data {
		for j, id := range s.IDs {
			if id < 0 {
				return nil, fmt.Errorf("sft: sequence %d token %d: id %d is negative (token ids run from 0 to the vocabulary size − 1)", i, j, id)
			}
		}
		if s.PromptLen < 0 || s.PromptLen > len(s.IDs) {
			return nil, fmt.Errorf("sft: sequence %d: prompt length %d outside [0, %d], its length", i, s.PromptLen, len(s.IDs))
		}
	}
	ds := &train.LMDataset{SeqLen: cfg.SeqLen, Pad: pad, Packed: cfg.Packing}
	for _, s := range data {
		ds.Rows = append(ds.Rows, s.IDs)
		ds.PromptLen = append(ds.PromptLen, s.PromptLen)
	}
	settings, err := cfg.settings(model, ds, pad) // before the build, which may consume the model
	if err != nil {
		return nil, err
	}
	held := train.ModelBytes(model) // kept by the caller beside the training graph
	if cfg.ConsumeModel {
		held = 0
	}
	lora := cfg.lora(cfg.Seed, "stages.sft")
	tg, adapters, err := train.BuildLMTraining(model, train.LMTraining{Batch: int64(cfg.Batch), SeqLen: int64(cfg.SeqLen), Packed: cfg.Packing,
		Consume: cfg.ConsumeModel, LoRA: lora, FrozenAsInputs: lora != nil, Recompute: cfg.GradientCheckpointing})
	if err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	ds.Graph = tg
	tg.ReleaseInitial = true // one trainer: its copy of the weights is the one kept
	if err := checkSFTMemory(held, tg, cfg, progress); err != nil {
		return nil, err
	}
	tr, err := train.NewTrainer(tg, train.TrainerOptions{
		Schedule:    train.Schedule{Peak: cfg.LR, Warmup: cfg.Warmup, Total: cfg.Steps, MinRatio: 0.1},
		WeightDecay: cfg.WeightDecay, ClipNorm: cfg.Clip, Session: cfg.Session,
	})
	if err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	defer tr.Close()
	res := &SFTResult{}
	start := time.Now()
	loop := &train.Loop{Trainer: tr, Data: ds, BatchSize: cfg.Batch, Steps: cfg.Steps, Dir: dir, Settings: settings,
		CheckpointEvery: cfg.CheckpointEvery, ExportBytes: cfg.ExportBytes, Seed: cfg.Seed, Stage: "sft", Progress: func(p train.Progress) {
			if p.Metrics != nil {
				res.FinalLoss = p.Metrics["loss"]
			}
			progress.Report(p)
		}}
	// On a GPU, weights and AdamW moments stay on the device between steps.
	if loop.Device, err = train.DeviceTrainerFor(tr, cfg.Session); err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	defer loop.Device.Close()
	st, err := loop.Run(ctx)
	var mm *train.SettingsMismatchError
	if errors.As(err, &mm) {
		return nil, fmt.Errorf("sft: %w; remove %s to start the stage over", err, dir)
	}
	if err != nil {
		return nil, err
	}
	res.Steps, res.Seconds, res.Weights, res.Adapters = st.Step, time.Since(start).Seconds(), tr.Weights(), adapters
	return res, nil
}

// checkSFTMemory reports the stage's peak-memory estimate — the training
// steps' (train.EstimateMemory) and held, the bytes of a model the caller
// keeps beside them — and refuses a run past runtime.max_memory_gb (0: the
// memory free when it starts), naming the settings to reduce.
func checkSFTMemory(held int64, tg *train.TrainingGraph, cfg SFTConfig, progress train.ProgressFunc) error {
	est := train.EstimateMemory(tg)
	est.Weights += held
	progress.Report(train.Progress{Task: StageSFT, Total: cfg.Steps, Note: "memory estimate: " + est.String()})
	limit, check, err := train.MemoryLimit(cfg.MaxMemoryGB)
	if err != nil {
		return fmt.Errorf("sft: %w (runtime.max_memory_gb sets the limit; -1 skips the check)", err)
	}
	if !check {
		return nil
	}
	knobs := train.MemoryKnobs{Batch: "stages.sft.batch", SeqLen: "stages.sft.seq_len"}
	if cfg.Rank == 0 {
		knobs.LoRA = "stages.sft.lora_rank"
	}
	if err := est.Fits(limit, knobs); err != nil {
		return fmt.Errorf("sft: %w (runtime.max_memory_gb sets another limit; -1 skips the check)", err)
	}
	return nil
}

// settings are what decide an SFT run's result (not the checkpoint
// interval): a resume must have the same.
func (c SFTConfig) settings(model *onnxpb.ModelProto, ds *train.LMDataset, pad int64) (train.RunSettings, error) {
	sum, err := train.ModelSHA256(model)
	if err != nil {
		return nil, fmt.Errorf("sft: %w", err)
	}
	s := train.RunSettings{}.Set("steps", c.Steps).Set("batch", c.Batch).Set("seq_len", c.SeqLen).Set("lr", c.LR).
		Set("warmup", c.Warmup).Set("weight_decay", c.WeightDecay).Set("clip", c.Clip).Set("seed", c.Seed).Set("pad", pad).
		Set("model_sha256", sum).Set("data_sha256", train.DataSHA256(ds.Rows, ds.PromptLen))
	if c.Packing {
		// Only when on: runs recorded before packing existed resume as before.
		s = s.Set("packing", true)
	}
	if c.GradientCheckpointing {
		// Gradients are unchanged, but the float32 sums may round apart: a
		// resume keeps the setting.
		s = s.Set("gradient_checkpointing", true)
	}
	if l := c.lora(c.Seed, ""); l != nil {
		s = s.Set("lora_rank", l.Rank).Set("lora_alpha", l.Alpha).Set("lora_targets", l.Targets)
	}
	return s, nil
}

// loadForTraining reads a policy and gives its weights their Hugging Face
// names, as train lm does: a tied lm head (an Optimum export stores it as a
// transposed copy of the embedding) then trains as one tensor with the
// embedding, and checkpoints and logs use Hugging Face names. A graph whose
// nodes carry no module paths keeps its ONNX names (NameWeights leaves it
// unchanged).
func loadForTraining(path string) (*onnxpb.ModelProto, error) {
	m, err := ir.Load(path)
	if err != nil {
		return nil, err
	}
	hc, err := lm.ReadHFConfig(filepath.Join(filepath.Dir(path), "config.json"))
	if err != nil {
		return nil, err
	}
	_, _ = lm.NameWeightsFor(m, hc)
	// Reading left buffers behind (the file's bytes, renamed copies): give
	// them back before the stage builds its sessions on top.
	debug.FreeOSMemory()
	return m, nil
}
