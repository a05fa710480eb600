package train

import (
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

func TestPackRows(t *testing.T) {
	lens := []int{5, 9, 3, 7, 2, 12, 4}
	rows := PackRows(lens, 10)
	seen := map[int]bool{}
	for _, r := range rows {
		n := 0
		for _, e := range r {
			if seen[e] {
				t.Fatalf("example %d packed twice", e)
			}
			seen[e] = true
			n += min(lens[e], 10)
		}
		if n > 10 {
			t.Fatalf("row %v holds %d tokens, more than 10", r, n)
		}
	}
	if len(seen) != len(lens) {
		t.Fatalf("packed %d of %d examples", len(seen), len(lens))
	}
	// 42 tokens (12 cut to 10) fit in 5 rows of 10; best-fit decreasing finds 5.
	if len(rows) != 5 {
		t.Fatalf("%d rows %v, want 5", len(rows), rows)
	}
}

// TestPackedEqualsUnpacked: training on packed rows gives the loss, the
// per-example log-probabilities and the gradients of training on the same
// examples one per row (float64), for Llama (rotary) and GPT-2 (learned
// positions) models.
func TestPackedEqualsUnpacked(t *testing.T) {
	examples := [][]int64{{3, 5, 7, 9, 11}, {4, 6, 8}, {1, 2, 3, 4, 5, 6, 7}, {9, 8}, {10, 12, 14, 16}}
	prompts := []int{2, 0, 3, 0, 1}
	for _, arch := range []lm.Arch{lm.Llama, lm.GPT2} {
		t.Run(string(arch), func(t *testing.T) {
			cfg := tinyConfig(arch, "float64")
			m, err := lm.Build(cfg)
			if err != nil {
				t.Fatal(err)
			}
			plain := NewLMBatch(examples, 7, 0, prompts)
			rows := PackRows([]int{5, 3, 7, 2, 4}, 10)
			packed := NewPackedLMBatch(examples, prompts, rows, 10, 0)
			if packed.B >= plain.B || packed.Tokens() != plain.Tokens() {
				t.Fatalf("packed %d rows with %d targets; plain %d rows with %d", packed.B, packed.Tokens(), plain.B, plain.Tokens())
			}
			run := func(b *LMBatch, packed bool) (map[string][]float64, *TrainingGraph) {
				tg, _, err := BuildLMTraining(m, LMTraining{Batch: b.B, SeqLen: b.T, Packed: packed, Keep: []string{TokenLogprobsOutput}})
				if err != nil {
					t.Fatal(err)
				}
				return runTraining(t, tg, lmFeeds(t, m, b)), tg
			}
			want, tg := run(plain, false)
			got, _ := run(packed, true)
			if d := math.Abs(got[tg.Loss][0] - want[tg.Loss][0]); d > 1e-12 {
				t.Fatalf("loss %v, unpacked %v", got[tg.Loss][0], want[tg.Loss][0])
			}
			// Each example's token log-probs, found in its packed row.
			for r, row := range rows {
				off := 0
				for _, e := range row {
					for j := 1; j < len(examples[e]); j++ {
						g := got[TokenLogprobsOutput][r*9+off+j-1]
						w := want[TokenLogprobsOutput][e*6+j-1]
						if math.Abs(g-w) > 1e-12 {
							t.Fatalf("example %d token %d: log-prob %v packed, %v alone", e, j, g, w)
						}
					}
					off += len(examples[e])
				}
			}
			worst := 0.0
			for _, p := range tg.Params {
				w, g := want[GradPrefix+p], got[GradPrefix+p]
				for i := range w {
					worst = max(worst, math.Abs(g[i]-w[i])/math.Max(1e-6, math.Abs(w[i])))
				}
			}
			if worst > 1e-9 {
				t.Fatalf("gradients differ by %.3g (relative)", worst)
			}
			t.Logf("packed %d rows into %d; padding %.0f%% → %.0f%%; max gradient difference %.2g", plain.B, packed.B,
				100*plain.PaddingFraction(), 100*packed.PaddingFraction(), worst)
		})
	}
}

// TestPackedDatasetAndRefusal: LMDataset serves packed rows; a model that
// computes its own positions is refused for packing, naming why.
func TestPackedDatasetAndRefusal(t *testing.T) {
	cfg := tinyConfig(lm.Llama, "float32")
	m, err := lm.Build(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 8, Packed: true})
	if err != nil {
		t.Fatal(err)
	}
	d := &LMDataset{Rows: randomRows(3, 7, 2, 5, cfg.Vocab), SeqLen: 8, Graph: tg, Packed: true}
	if d.Len() >= 7 {
		t.Fatalf("%d packed rows for 7 short examples", d.Len())
	}
	in, release, err := d.Batch([]int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	release()
	_ = in
	// Without position_ids the graph cannot tell packed examples apart.
	sp := &Specialized{Model: cloneModel(m), Types: map[string]ValueType{"input_ids": {Elem: 7, Shape: []int64{2, 8}}}}
	if _, err := isolateExamples(sp); err == nil || !strings.Contains(err.Error(), "position_ids") {
		t.Fatalf("error %v should say packing needs position_ids", err)
	}
}
