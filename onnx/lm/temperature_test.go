package lm

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// TestWithTemperature: the tempered model's logits are the plain model's
// divided by τ, τ = 1 is the model itself, and nonsense τ is refused.
func TestWithTemperature(t *testing.T) {
	plain, err := Build(testConfigs()["llama"])
	if err != nil {
		t.Fatal(err)
	}
	if same, err := WithTemperature(plain, 1); err != nil || same != plain {
		t.Fatalf("τ = 1: %v (same model: %v)", err, same == plain)
	}
	for _, bad := range []float64{0, -1, math.Inf(1), math.NaN()} {
		if _, err := WithTemperature(plain, bad); err == nil || !strings.Contains(err.Error(), "temperature") {
			t.Errorf("τ = %v: %v", bad, err)
		}
	}
	hot, err := WithTemperature(plain, 0.5)
	if err != nil {
		t.Fatal(err)
	}
	forward := func(label string, pm *onnxpb.ModelProto) []float32 {
		b, err := ir.Marshal(pm)
		if err != nil {
			t.Fatal(err)
		}
		m, err := LoadBytes(b, label, LoadOptions{Session: ort.Options{IntraOpThreads: 1}})
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		l, _, err := m.Forward(context.Background(), testPrompts[:1], 0)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	p, h := forward("plain", plain), forward("hot", hot)
	for i, v := range p {
		if d := math.Abs(float64(h[i] - 2*v)); d > 1e-5*math.Max(1, math.Abs(float64(v))) {
			t.Fatalf("logit %d: tempered %v, plain %v (want plain/0.5)", i, h[i], v)
		}
	}
}

// A temperature whose inverse leaves float32's range (the logits are scaled
// by float32(1/τ)) is refused naming it, not run into Inf/NaN logits or a
// uniform policy.
func TestWithTemperatureRefusesOutOfFloat32(t *testing.T) {
	m, err := Build(Config{Arch: Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 1, Vocab: 32, MaxPositions: 16, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tau := range []float64{1e-40, 1e46} {
		if _, err := WithTemperature(m, tau); err == nil || !strings.Contains(err.Error(), "float32") {
			t.Errorf("temperature %v: %v; want a refusal", tau, err)
		}
	}
	for _, tau := range []float64{1e-30, 0.7, 1e30} {
		if _, err := WithTemperature(m, tau); err != nil {
			t.Errorf("temperature %v: %v", tau, err)
		}
	}
}
