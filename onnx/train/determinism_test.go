package train

import (
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
)

// Gradients are bit-identical from run to run and independent of the number
// of ORT threads. (ORT's multithreaded ScatterND with reduction=add, the
// obvious embedding gradient, loses updates on repeated token ids.)
func TestGradientsDeterministicAcrossThreads(t *testing.T) {
	c := lm.Config{Arch: lm.Llama, Layers: 1, DModel: 128, Heads: 4, KVHeads: 2, Vocab: 256, MaxPositions: 448, Seed: 5}
	m, err := lm.Build(c)
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 8, SeqLen: 448})
	if err != nil {
		t.Fatal(err)
	}
	rows := make([][]int64, 8)
	for i := range rows {
		for j := 0; j < 400+i*5; j++ {
			rows[i] = append(rows[i], int64((i*7+j*13)%256)) // every id repeats ~13 times
		}
	}
	batch := NewLMBatch(rows, 448, 0, []int{10, 5, 0, 20, 3, 8, 1, 2})
	grads := func(threads, runs int) [][][]float32 {
		tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3}, Session: ort.Options{IntraOpThreads: threads}})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		var out [][][]float32
		for k := 0; k < runs; k++ {
			v, err := batch.Values(tg)
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := tr.Compute(v); err != nil {
				t.Fatal(err)
			}
			for _, x := range v {
				x.Destroy()
			}
			var g [][]float32
			for _, x := range tr.Grads() {
				g = append(g, append([]float32(nil), x...))
			}
			out = append(out, g)
		}
		return out
	}
	single := grads(1, 1)[0]
	for k, g := range grads(0, 4) {
		for i := range g {
			for j := range g[i] {
				if g[i][j] != single[i][j] {
					t.Fatalf("run %d: gradient of %s[%d] = %v with all threads, %v with one", k, tg.Params[i], j, g[i][j], single[i][j])
				}
			}
		}
	}
}
