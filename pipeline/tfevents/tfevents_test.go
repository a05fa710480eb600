package tfevents

import (
	"hash/crc32"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCRC32C(t *testing.T) {
	// The CRC-32C check value (RFC 3720 B.4) and TFRecord's mask of it.
	c := crc32.Checksum([]byte("123456789"), castagnoli)
	if c != 0xe3069283 {
		t.Fatalf("crc32c = %#x, want 0xe3069283", c)
	}
	if got, want := maskedCRC([]byte("123456789")), (c>>15|c<<17)+0xa282ead8; got != want {
		t.Fatalf("masked %#x, want %#x", got, want)
	}
}

func TestWriteReadBack(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "sft")
	w, err := Create(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(filepath.Base(w.Path()), FilePrefix) {
		t.Fatalf("file %s does not start with %s", w.Path(), FilePrefix)
	}
	if err := w.Restart(3); err != nil {
		t.Fatal(err)
	}
	for step := int64(3); step <= 5; step++ {
		if err := w.Scalars(step, map[string]float64{"loss": 1 / float64(step), "lr/x": 0.5, "bad": math.NaN(), "huge": 1e300}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Scalars(6, map[string]float64{"loss": math.Inf(1)}); err != nil { // nothing left: no event
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, err := Files(dir)
	if err != nil || len(files) != 1 || files[0] != w.Path() {
		t.Fatalf("Files = %v, %v", files, err)
	}
	evs, err := ReadFile(w.Path())
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 5 || evs[0].FileVersion != "brain.Event:2" || !evs[1].SessionStart || evs[1].Step != 3 {
		t.Fatalf("events %+v", evs)
	}
	for i, e := range evs[2:] {
		step := int64(3 + i)
		if e.Step != step || len(e.Scalars) != 2 || e.Scalars["loss"] != float32(1/float64(step)) || e.Scalars["lr/x"] != 0.5 || e.WallTime < 1e9 {
			t.Errorf("event %d: %+v", i, e)
		}
	}

	// A record cut short ends the file; a flipped byte is an error.
	raw, _ := os.ReadFile(w.Path())
	cut := filepath.Join(t.TempDir(), FilePrefix+"cut")
	os.WriteFile(cut, raw[:len(raw)-3], 0o644)
	if evs, err := ReadFile(cut); err != nil || len(evs) != 4 {
		t.Errorf("truncated file: %d events, %v; want the 4 whole ones", len(evs), err)
	}
	bad := append([]byte{}, raw...)
	bad[len(bad)-8] ^= 1
	os.WriteFile(cut, bad, 0o644)
	if _, err := ReadFile(cut); err == nil || !strings.Contains(err.Error(), "checksum") {
		t.Errorf("a flipped byte: %v, want a checksum error", err)
	}
}
