package train

import (
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// TestRecomputeSameGradients: with recomputation the backward pass reads
// recomputed activations, not the forward pass's, and the loss and every
// gradient are the same (float64; Llama and GPT-2, full and LoRA).
func TestRecomputeSameGradients(t *testing.T) {
	for _, arch := range []lm.Arch{lm.Llama, lm.GPT2} {
		for _, lora := range []bool{false, true} {
			m, err := lm.Build(tinyConfig(arch, "float64"))
			if err != nil {
				t.Fatal(err)
			}
			b := NewLMBatch(randomRows(3, 2, 4, 9, 32), 9, 0, []int{2, 0})
			run := func(recompute bool) (map[string][]float64, *TrainingGraph) {
				o := LMTraining{Batch: b.B, SeqLen: b.T, Recompute: recompute}
				if lora {
					o.LoRA = &LoRA{Rank: 2, Alpha: 4, Seed: 1}
				}
				tg, _, err := BuildLMTraining(m, o)
				if err != nil {
					t.Fatal(err)
				}
				return runTraining(t, tg, lmFeeds(t, m, b)), tg
			}
			want, _ := run(false)
			got, tg := run(true)
			recomputed := 0
			for _, n := range tg.Model.Graph.Node {
				if strings.HasPrefix(n.GetName(), recomputePrefix) {
					recomputed++
				}
			}
			if recomputed < 10 {
				t.Fatalf("%s lora=%v: %d recomputed nodes", arch, lora, recomputed)
			}
			for k, w := range want {
				for i := range w {
					if math.Abs(got[k][i]-w[i]) > 1e-13*math.Max(1, math.Abs(w[i])) {
						t.Fatalf("%s lora=%v: %s[%d] = %v with recomputation, %v without", arch, lora, k, i, got[k][i], w[i])
					}
				}
			}
			t.Logf("%s lora=%v: %d nodes recomputed", arch, lora, recomputed)
		}
	}
}
