package grpo

import (
	"errors"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/train"
	"github.com/tagpr/tagpr/pipeline/grpo/grpotest"
)

// TestMemoryEstimate: New reports the run's peak-memory estimate before its
// sessions open — the rollouts' KV cache and decode buffers, the reference
// model only with beta > 0 — and refuses a run past Options.MemoryLimit,
// naming what to reduce. (BenchmarkGRPOStep's peak_vs_estimate compares it
// with a run's measured peak: 0.91–1.02 on the bench shapes, beta 0 and
// 0.04, vocabularies 8,000 and 151,669.)
func TestMemoryEstimate(t *testing.T) {
	model := tinyModel(t)
	for _, beta := range []float64{0, 0.02} {
		cfg := tinyConfig(t.TempDir())
		cfg.Beta = beta
		o := tinyOptions()
		var notes []string
		o.Progress = func(p train.Progress) {
			if p.Note != "" {
				notes = append(notes, p.Note)
			}
		}
		tr, err := New(model, []Reward{targetShare}, tinyPrompts(4), cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		e := tr.Memory()
		B, T := int64(tr.B), int64(tr.T)
		tr.Close()
		c := grpotest.Config
		perToken := int64(c.Layers * 2 * c.KVHeads * (c.DModel / c.Heads) * 4) // key and value, float32
		if want := 2*B*T*perToken + 4*B*int64(c.Vocab)*4; e.Generation != want {
			t.Errorf("beta %v: generation %d bytes, want %d (KV cache of %d rows × %d positions, twice, and 4 vocabulary buffers a row)", beta, e.Generation, want, B, T)
		}
		wantRef := int64(0)
		if beta > 0 {
			wantRef = train.ModelBytes(model) + e.Transient
		}
		if e.Reference != wantRef {
			t.Errorf("beta %v: reference %d bytes, want %d", beta, e.Reference, wantRef)
		}
		if len(notes) == 0 || !strings.HasPrefix(notes[0], "memory estimate: ") || !strings.Contains(notes[0], "generation ") ||
			strings.Contains(notes[0], "reference ") != (beta > 0) || !strings.HasSuffix(notes[0], "total "+train.FormatBytes(e.Total())) {
			t.Errorf("beta %v: first note %q, want the estimate with its RL parts", beta, notes)
		}

		// At the estimate it starts; a byte less and it is refused.
		o.Progress, o.MemoryLimit = nil, e.Total()
		tr, err = New(model, []Reward{targetShare}, tinyPrompts(4), cfg, o)
		if err != nil {
			t.Fatalf("beta %v, limit = estimate: %v", beta, err)
		}
		tr.Close()
		o.MemoryLimit = e.Total() - 1
		_, err = New(model, []Reward{targetShare}, tinyPrompts(4), cfg, o)
		var me *train.MemoryError
		if !errors.As(err, &me) || !strings.Contains(err.Error(), "reduce prompts_per_step or num_generations or max_completion_length") ||
			strings.Contains(err.Error(), "set beta 0") != (beta > 0) {
			t.Errorf("beta %v, limit a byte under: %v; want a *train.MemoryError naming the knobs", beta, err)
		}
	}
}
