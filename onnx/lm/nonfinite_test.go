package lm

import (
	"context"
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

// TestGenerateRefusesNonFiniteLogits: a model whose weights hold a NaN must
// stop generation with an error, not pick tokens from garbage.
func TestGenerateRefusesNonFiniteLogits(t *testing.T) {
	c := testConfigs()["llama"]
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	poisoned := ""
	for _, init := range pm.Graph.Initializer {
		if strings.Contains(init.GetName(), "norm") && len(init.RawData) >= 4 {
			binary.LittleEndian.PutUint32(init.RawData, math.Float32bits(float32(math.NaN())))
			poisoned = init.GetName()
			break
		}
	}
	if poisoned == "" {
		t.Fatal("no norm weight stored as raw data to poison")
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(b, "poisoned llama", LoadOptions{Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, s := range []Sampling{{}, {Temperature: 1}, {Temperature: 0.7, TopP: 0.9}} {
		comps, _, err := m.Generate(context.Background(), testPrompts, GenerateOptions{MaxNewTokens: 4, Sampling: s, Seed: 1})
		if err == nil || !strings.Contains(err.Error(), "not finite") {
			t.Fatalf("sampling %+v with NaN in %s: err %v, %d completions; want a 'not finite' error", s, poisoned, err, len(comps))
		}
	}
	// The continuous batcher (tagpr serve) fails the request the same way.
	bat, err := NewBatcher(m, BatcherOptions{MaxRows: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer bat.Close()
	ctx := context.Background()
	for _, s := range []Sampling{{}, {Temperature: 1}} {
		st, err := bat.Submit(ctx, Request{Prompt: testPrompts[0], MaxNewTokens: 4, Sampling: s, Seed: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Collect(ctx); err == nil || !strings.Contains(err.Error(), "not finite") {
			t.Fatalf("batcher, sampling %+v: err %v; want a 'not finite' error", s, err)
		}
	}
}
