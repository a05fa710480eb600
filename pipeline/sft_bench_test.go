package pipeline

import (
	"context"
	"testing"

	"github.com/tagpr/tagpr/datasets"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/train"
)

// BenchmarkSFTPacking: SFT on the demo's chains (configs/demo.yaml: its
// data, tokenizer, chains stage and base model), run alternately one chain per row at the demo's batch of 8 × 448
// tokens and packed into rows twice as long at half the batch (the same
// tokens per step; the chains are up to 448 tokens, so only longer rows can
// hold two): padding fraction of the rows, sequence tokens (not padding)
// per second of training, and the time of an epoch unpacked over packed.
func BenchmarkSFTPacking(b *testing.B) {
	mustORT(b)
	// configs/demo.yaml's data, tokenizer, policy and SFT shape.
	cfg := tinyRun(b.TempDir())
	cfg.Policy.Builtin = &BuiltinPolicy{Arch: "llama", Layers: 4, DModel: 128, Heads: 4, KVHeads: 2, MaxPositions: 512, Seed: 7}
	cfg.Data.Synth = &SynthSource{Seed: 1, Users: 200, QueriesPerUser: 4, ProfileMin: 4, ProfileMax: 6, DevFrac: 0.1, TestFrac: 0.1,
		TitleCloserMiss: datasets.DemoTitleCloserMiss}
	cfg.Stages.SFT.SFTConfig = SFTConfig{Steps: 4, Batch: 8, SeqLen: 448, LR: 3e-3, Warmup: 1, WeightDecay: 0.01, Clip: 1, Seed: 11}
	r, err := openRun(cfg, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer r.close()
	ctx := context.Background()
	if err := r.prepare(ctx); err != nil {
		b.Fatal(err)
	}
	if _, err := r.runStage(ctx, StageChains); err != nil {
		b.Fatal(err)
	}
	seqs, _, err := r.sftSequences()
	if err != nil {
		b.Fatal(err)
	}
	mp, err := lm.ResolveModelPath(r.base)
	if err != nil {
		b.Fatal(err)
	}
	base, err := ir.Load(mp)
	if err != nil {
		b.Fatal(err)
	}
	pad := r.pad
	sftCfg := cfg.Stages.SFT.SFTConfig
	tokens, lens := 0, make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = min(len(s.IDs), sftCfg.SeqLen)
		tokens += lens[i]
	}
	sft := sftCfg
	sft.Session = r.sess
	sft.Steps, sft.Warmup, sft.CheckpointEvery = 4, 1, 0
	shape := func(packed bool) (batch, seqLen int) {
		if packed {
			return sft.Batch / 2, 2 * sft.SeqLen
		}
		return sft.Batch, sft.SeqLen
	}
	_, packedLen := shape(true)
	rows := map[bool]int{false: len(seqs), true: len(train.PackRows(lens, packedLen))}
	seconds := map[bool]float64{}
	for i := 0; i < b.N; i++ {
		for rep := 0; rep < 2; rep++ {
			for _, packed := range []bool{false, true} {
				c := sft
				c.Packing = packed
				c.Batch, c.SeqLen = shape(packed)
				res, err := TrainSFT(context.Background(), base, seqs, pad, c, b.TempDir(), nil)
				if err != nil {
					b.Fatal(err)
				}
				if s := res.Seconds / float64(res.Steps); seconds[packed] == 0 || s < seconds[packed] {
					seconds[packed] = s
				}
			}
		}
	}
	steps := map[bool]float64{}
	for _, packed := range []bool{false, true} {
		name := map[bool]string{false: "unpacked", true: "packed"}[packed]
		batch, seqLen := shape(packed)
		padding := 1 - float64(tokens)/float64(rows[packed]*seqLen)
		b.ReportMetric(padding, name+"_padding_frac")
		b.ReportMetric(float64(batch*seqLen)*(1-padding)/seconds[packed], name+"_seq_tokens/s")
		steps[packed] = float64(rows[packed]) / float64(batch)
	}
	b.ReportMetric(steps[false]*seconds[false]/(steps[true]*seconds[true]), "packed_epoch_speedup")
	b.ReportMetric(float64(len(seqs))/float64(rows[true]), "chains_per_packed_row")
}
