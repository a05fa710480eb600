package ort

import (
	"strings"
	"testing"
)

// The transfer counter counts uploads, downloads, host values bound to a
// binding at each run, and copies within the device; BindDeviceOutput
// writes an output in place into a device tensor; CopyRows refuses what
// does not fit.
func TestTransfersAndDeviceCopies(t *testing.T) {
	s := gpt2Session(t)
	dev := DeviceFor(Options{})
	before := TransferCounts()
	a, err := Upload(s, dev, []int64{2, 3}, []float32{1, 2, 3, 4, 5, 6})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Release()
	b, err := NewDeviceTensor[float32](s, dev, []int64{3, 3})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Release()
	if err := CopyRows(b, 6, a, 0, 3); err != nil { // row 0 of a → row 2 of b
		t.Fatal(err)
	}
	got, err := Download[float32](b)
	if err != nil {
		t.Fatal(err)
	}
	if got[6] != 1 || got[8] != 3 {
		t.Fatalf("copied row: %v", got[6:])
	}
	want := Transfers{HostToDevice: 24, DeviceToHost: 36, DeviceToDevice: 12}
	if moved := TransferCounts().Sub(before); moved != want {
		t.Fatalf("moved %v, want %v", moved, want)
	}
	if err := CopyRows(b, 7, a, 0, 3); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("copy past the end: %v", err)
	}
	ids, _ := NewDeviceTensor[int64](s, dev, []int64{3})
	defer ids.Release()
	if err := CopyRows(ids, 0, a, 0, 1); err == nil {
		t.Fatal("float32 rows copied into an int64 tensor")
	}
	h, err := NewHalfDeviceTensor(s, dev, []int64{4})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release()
	if _, err := Download[float32](h); err == nil {
		t.Fatal("a float16 tensor downloaded as float32")
	}

	// Host values bound to a binding count at every run; device ones never.
	bd, err := s.NewBinding()
	if err != nil {
		t.Fatal(err)
	}
	defer bd.Close()
	for name, v := range gpt2Step(t, []int64{5, 17}, 0) {
		if err := bd.BindInput(name, v); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range gpt2Cache {
		e, _ := NewTensor([]int64{1, 4, 0, 8}, []float32{})
		defer e.Destroy()
		if err := bd.BindInput("past_key_values."+c, e); err != nil {
			t.Fatal(err)
		}
		if err := bd.BindOutputTo("present."+c, dev); err != nil {
			t.Fatal(err)
		}
	}
	logits, err := NewDeviceTensor[float32](s, dev, []int64{1, 2, 96})
	if err != nil {
		t.Fatal(err)
	}
	defer logits.Release()
	if err := bd.BindDeviceOutput("logits", logits); err != nil {
		t.Fatal(err)
	}
	before = TransferCounts()
	for range 2 {
		if err := bd.Run(); err != nil {
			t.Fatal(err)
		}
		outs, err := bd.Outputs()
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range outs {
			o.Release()
		}
	}
	// ids, mask, positions: 3 × 2 int64 per run; the logits stay.
	if moved := TransferCounts().Sub(before); moved != (Transfers{HostToDevice: 2 * 3 * 2 * 8}) {
		t.Fatalf("two runs moved %v, want 96 B in and nothing out", moved)
	}
	l, err := Download[float32](logits)
	if err != nil {
		t.Fatal(err)
	}
	nonzero := false
	for _, x := range l {
		nonzero = nonzero || x != 0
	}
	if !nonzero {
		t.Fatal("the logits were not written into the bound device tensor")
	}
}
