package safetensors

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Tensors written from memory and from a Fill callback read back as
// written, mapped; a Fill that writes the wrong size leaves no file.
func TestWriteOpenRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	a := []float32{1, -2.5, 3}
	fill := func(w io.Writer) error {
		_, err := w.Write([]byte{0x80, 0x3f, 0x00, 0x40}) // BF16 1.0, 2.0
		return err
	}
	err := Write(p, []Tensor{
		{Name: "a", DType: "F32", Shape: []int64{3}, Data: LEBytes(a)},
		{Name: "b", DType: "BF16", Shape: []int64{2, 1}, Fill: fill},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if strings.Join(f.Names(), ",") != "a,b" || f.Meta["format"] != "pt" {
		t.Fatalf("names %v meta %v", f.Names(), f.Meta)
	}
	got, err := f.Float32s("a")
	if err != nil || got[1] != -2.5 {
		t.Fatalf("a = %v, %v", got, err)
	}
	f.Release("a")
	f.ReleaseRange("b", 0, 4)
	gb, err := f.Float32s("b")
	if err != nil || gb[0] != 1 || gb[1] != 2 {
		t.Fatalf("b = %v, %v (after release)", gb, err)
	}
	short := filepath.Join(t.TempDir(), "short.safetensors")
	err = Write(short, []Tensor{{Name: "x", DType: "F32", Shape: []int64{4}, Fill: fill}}, nil)
	if err == nil || !strings.Contains(err.Error(), "wrote 4 bytes") {
		t.Fatalf("short fill: %v", err)
	}
	if _, err := os.Stat(short); err == nil {
		t.Fatal("a half-written file was left")
	}
}

// Corrupt headers are errors naming the file and the problem.
func TestOpenRejectsCorruptHeaders(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"short":   "abc",
		"json":    "\x05\x00\x00\x00\x00\x00\x00\x00{oops",
		"dtype":   "\x3a\x00\x00\x00\x00\x00\x00\x00" + `{"x":{"dtype":"Q8","shape":[1],"data_offsets":[0,1]}}    ` + "\x00",
		"overlap": "\x3a\x00\x00\x00\x00\x00\x00\x00" + `{"x":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}    ` + "\x00",
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o644)
		_, err := Open(p)
		if err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// A folder given as a safetensors file is refused as one: mapping it
// failed with "no such device".
func TestOpenRefusesFolder(t *testing.T) {
	dir := t.TempDir()
	_, err := Open(dir)
	if err == nil || !strings.Contains(err.Error(), dir+": not a regular file") {
		t.Errorf("Open(folder) = %v, want it refused as not a regular file", err)
	}
}
