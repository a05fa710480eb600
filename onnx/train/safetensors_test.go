package train

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSafetensorsRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "x.safetensors")
	in := map[string]STensor{
		"w":    {Shape: []int64{2, 2}, F32: []float32{1, 2, 3, -4.5}},
		"d":    {Shape: []int64{3}, F64: []float64{0.1, 0.2, 0.3}},
		"ids":  {Shape: []int64{1, 2}, I64: []int64{-1, 1 << 40}},
		"zero": {Shape: []int64{0, 4}, F32: []float32{}},
		"none": {Shape: []int64{5, 0}, F64: []float64{}},
	}
	if err := WriteSafetensors(p, in, map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	out, meta, err := ReadSafetensors(p)
	if err != nil {
		t.Fatal(err)
	}
	if meta["k"] != "v" {
		t.Fatalf("metadata %v", meta)
	}
	if got := out["w"].F32; len(got) != 4 || got[3] != -4.5 {
		t.Fatalf("w = %v", got)
	}
	if got := out["d"].F64; got[1] != 0.2 {
		t.Fatalf("d = %v", got)
	}
	if got := out["ids"].I64; got[1] != 1<<40 {
		t.Fatalf("ids = %v", got)
	}
	b, _ := os.ReadFile(p)
	if hl := binary.LittleEndian.Uint64(b); (8+hl)%8 != 0 {
		t.Fatalf("data not 8-byte aligned: header %d", hl)
	}
	if err := WriteSafetensors(p, map[string]STensor{"bad": {Shape: []int64{3}, F32: []float32{1}}}, nil); err == nil {
		t.Fatal("shape/data mismatch accepted")
	}
	// The failed write must leave the previous file intact.
	if _, _, err := ReadSafetensors(p); err != nil {
		t.Fatalf("previous file damaged by a failed write: %v", err)
	}
}

// testdata/python.safetensors was written by Python's safetensors.numpy.save_file.
func TestSafetensorsReadsPythonFile(t *testing.T) {
	out, meta, err := ReadSafetensors("testdata/python.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if meta["made_by"] != "safetensors.numpy" {
		t.Fatalf("metadata %v", meta)
	}
	a := out["a"]
	if len(a.Shape) != 2 || a.Shape[0] != 2 || a.Shape[1] != 3 || a.F32[5] != 2.5 {
		t.Fatalf("a = %+v", a)
	}
	if out["b"].F64[1] != -2.25 || out["c"].I64[1] != -8 || out["i"].I64[1] != -4 {
		t.Fatalf("b/c/i = %v %v %v", out["b"], out["c"], out["i"])
	}
	h := out["h"].F32
	if h[0] != 1 || h[1] != -0.5 || h[2] != 65504 || h[3] != 6.1035156e-05 {
		t.Fatalf("f16 widened to %v", h)
	}
}

func TestSafetensorsRejectsCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	good, _ := os.ReadFile("testdata/python.safetensors")
	hl := binary.LittleEndian.Uint64(good)
	cases := map[string][]byte{
		"short":       good[:5],
		"huge header": append(binary.LittleEndian.AppendUint64(nil, 1<<40), good[8:]...),
		"bad json":    append(append(binary.LittleEndian.AppendUint64(nil, 4), []byte("{x: ")...), 0),
		"truncated":   good[:len(good)-3],
		"extra":       append(append([]byte{}, good...), 1, 2, 3),
	}
	_ = hl
	for name, b := range cases {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_")+".safetensors")
		os.WriteFile(p, b, 0o644)
		if _, _, err := ReadSafetensors(p); err == nil {
			t.Errorf("%s: accepted", name)
		} else if !strings.Contains(err.Error(), p) {
			t.Errorf("%s: error does not name the file: %v", name, err)
		}
	}
}

// FuzzReadSafetensors: any bytes give tensors or an error, never a panic.
func FuzzReadSafetensors(f *testing.F) {
	good, _ := os.ReadFile("testdata/python.safetensors")
	f.Add(good)
	f.Add([]byte{})
	f.Add(append(binary.LittleEndian.AppendUint64(nil, 2), []byte("{}")...))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "f.safetensors")
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ReadSafetensors(p)
	})
}
