package train

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckpointRoundTripAndErrors(t *testing.T) {
	dir := t.TempDir()
	ps := []*Param{{Name: "w", Shape: []int64{2, 2}, Data: []float32{1, 2, 3, 4}}, {Name: "b", Shape: []int64{2}, Data: []float32{5, 6}}}
	opt := NewAdamW([]int{4, 2}, 0.1)
	if _, err := LoadCheckpoint(dir, ps, opt); !errors.Is(err, ErrNoCheckpoint) {
		t.Fatalf("empty dir: %v, want ErrNoCheckpoint", err)
	}
	opt.M[0][1], opt.V[1][0], opt.Step = 0.5, 0.25, 7
	for step := 1; step <= 4; step++ {
		if err := SaveCheckpoint(dir, ps, opt, RunState{Step: step, Cursor: 3, RNG: []byte{1, 2}}, 2); err != nil {
			t.Fatal(err)
		}
	}
	if old, _ := filepath.Glob(filepath.Join(dir, "step-*")); len(old) != 2 {
		t.Fatalf("kept %v, want the 2 newest", old)
	}
	ps2 := []*Param{{Name: "w", Shape: []int64{2, 2}, Data: make([]float32, 4)}, {Name: "b", Shape: []int64{2}, Data: make([]float32, 2)}}
	opt2 := NewAdamW([]int{4, 2}, 0.1)
	st, err := LoadCheckpoint(dir, ps2, opt2)
	if err != nil {
		t.Fatal(err)
	}
	if st.Step != 4 || st.Cursor != 3 || ps2[0].Data[3] != 4 || ps2[1].Data[1] != 6 || opt2.M[0][1] != 0.5 || opt2.V[1][0] != 0.25 || opt2.Step != 7 {
		t.Fatalf("restored %+v %v %v %v", st, ps2[0].Data, opt2.M, opt2.Step)
	}
	bad := []*Param{{Name: "w", Shape: []int64{4}, Data: make([]float32, 4)}}
	if _, err := LoadCheckpoint(dir, bad, nil); err == nil || !strings.Contains(err.Error(), "shape") {
		t.Fatalf("shape mismatch: %v", err)
	}
	missing := []*Param{{Name: "nope", Shape: []int64{1}, Data: make([]float32, 1)}}
	if _, err := LoadCheckpoint(dir, missing, nil); err == nil || !strings.Contains(err.Error(), "nope") {
		t.Fatalf("missing tensor: %v", err)
	}
	os.WriteFile(filepath.Join(dir, latestFile), []byte("../../etc\n"), 0o644)
	if _, err := LoadCheckpoint(dir, ps2, nil); err == nil {
		t.Fatal("LATEST pointing outside accepted")
	}
}
