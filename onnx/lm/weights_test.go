package lm

import (
	"context"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// Weights fed from Go give the same model, and an in-place update of a Go
// slice changes the very next run, with no reload.
func TestWeightsAsInputsUpdateInPlace(t *testing.T) {
	c := testConfigs()["llama"]
	ref := buildModel(t, c)
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	names := TrainableNames(pm)
	if len(names) != 2+9*c.Layers+1 { // embed, lm_head, final norm; 9 per layer
		t.Fatalf("%d trainable weights: %v", len(names), names)
	}
	m, ws, err := OpenWithWeightInputs(pm, "llama with weight inputs", nil, LoadOptions{Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	defer func() {
		for _, w := range ws {
			w.Tensor.Destroy()
		}
	}()
	if len(m.Layout.Extra) != len(names) || !m.Layout.HasLogitsToKeep {
		t.Fatalf("layout extra inputs %v, want the %d weights", m.Layout.Extra, len(names))
	}
	ctx := context.Background()
	want, _, err := ref.Forward(ctx, testPrompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := m.Forward(ctx, testPrompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	if d := maxDiff(got, want); d > 1e-5 {
		t.Fatalf("weights as inputs change the logits by %.3e", d)
	}
	o := GenerateOptions{MaxNewTokens: 6, IgnoreEOS: true}
	g1, _, err := m.Generate(ctx, testPrompts, o)
	if err != nil {
		t.Fatal(err)
	}
	// Negate lm_head in place: logits flip sign on the next run.
	for _, w := range ws {
		if w.Name == "lm_head.weight" {
			for i := range w.Data {
				w.Data[i] = -w.Data[i]
			}
		}
	}
	flipped, _, err := m.Forward(ctx, testPrompts, 0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		want[i] = -want[i]
	}
	if d := maxDiff(flipped, want); d > 1e-5 {
		t.Fatalf("after negating lm_head in Go, logits are %.3e away from the negated logits", d)
	}
	m.ReleaseBuffers() // the next call reallocates
	g2, _, err := m.Generate(ctx, testPrompts, o)
	if err != nil {
		t.Fatal(err)
	}
	if equalIDs(g1[0].Tokens, g2[0].Tokens) {
		t.Error("generation ignored the updated weight")
	}

	// An unbound weight input is refused by name.
	pm2, _ := Build(c)
	if _, err := WeightsAsInputs(pm2, []string{"no.such.weight"}); err == nil {
		t.Error("unknown initializer accepted")
	}
}

func maxDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}
