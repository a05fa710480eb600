package pipeline

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/rewardmodel"
)

// BenchmarkSFTPacking: SFT on the demo's gold chains (its tokenizer and
// model), run alternately one chain per row at the demo's batch of 8 × 448
// tokens and packed into rows twice as long at half the batch (the same
// tokens per step; the chains are up to 448 tokens, so only longer rows can
// hold two): padding fraction of the rows, sequence tokens (not padding)
// per second of training, and the time of an epoch unpacked over packed.
func BenchmarkSFTPacking(b *testing.B) {
	mustORT(b)
	dir := b.TempDir()
	cfg := DefaultDemoConfig(dir)
	tx := rewardmodel.DefaultTaxonomy()
	data, err := datasets.Synth(cfg.Synth)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := demoTokenizer(cfg, data, tx, Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	baseDir, err := demoBaseModel(cfg, tok, Hooks{})
	if err != nil {
		b.Fatal(err)
	}
	seqs, err := demoSFTSequences(cfg, data, tok, tx)
	if err != nil {
		b.Fatal(err)
	}
	base, err := ir.Load(filepath.Join(baseDir, "model.onnx"))
	if err != nil {
		b.Fatal(err)
	}
	pad, err := tokenID(tok, padToken)
	if err != nil {
		b.Fatal(err)
	}
	tokens, lens := 0, make([]int, len(seqs))
	for i, s := range seqs {
		lens[i] = min(len(s.IDs), cfg.SFT.SeqLen)
		tokens += lens[i]
	}
	sft := cfg.SFT
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
