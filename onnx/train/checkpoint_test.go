package train

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math"
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

// A damaged checkpoint is refused by name, not resumed: a state.json whose
// step is not its folder's (it resumed at that step and reported steps never
// trained), or a weight or moment that is not finite.
func TestCheckpointDamagedRefused(t *testing.T) {
	fresh := func() []*Param {
		return []*Param{{Name: "w", Shape: []int64{2}, Data: []float32{1, 2}}}
	}
	save := func(t *testing.T) string {
		dir := t.TempDir()
		if err := SaveCheckpoint(dir, fresh(), NewAdamW([]int{2}, 0.1), RunState{Step: 4, Cursor: 3}, 2); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	for _, state := range []string{`{"step": 99, "cursor": 3}`, `{"step": -1, "cursor": 3}`, `{"step": 4, "cursor": -3}`} {
		dir := save(t)
		os.WriteFile(filepath.Join(dir, "step-00000004", stateFile), []byte(state), 0o644)
		if _, err := LoadCheckpoint(dir, fresh(), nil); err == nil || !strings.Contains(err.Error(), "not the state of step-00000004") {
			t.Errorf("state %s: %v, want it refused", state, err)
		}
	}
	dir := save(t)
	nan := []*Param{{Name: "w", Shape: []int64{2}, Data: []float32{1, float32(math.NaN())}}}
	w := map[string]STensor{"w": {Shape: nan[0].Shape, F32: nan[0].Data}}
	// WriteSafetensors refuses NaN; write the damaged file by hand.
	if err := writeSafetensorsUnchecked(filepath.Join(dir, "step-00000004", weightsFile), w); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadCheckpoint(dir, fresh(), nil); err == nil || !strings.Contains(err.Error(), `tensor "w" holds NaN`) {
		t.Errorf("NaN weight: %v, want it refused", err)
	}
}

// writeSafetensorsUnchecked writes F32 tensors without the finiteness check.
func writeSafetensorsUnchecked(path string, ts map[string]STensor) error {
	hdr := map[string]any{}
	var body []byte
	for name, t := range ts {
		start := len(body)
		for _, v := range t.F32 {
			body = binary.LittleEndian.AppendUint32(body, math.Float32bits(v))
		}
		hdr[name] = map[string]any{"dtype": "F32", "shape": t.Shape, "data_offsets": []int{start, len(body)}}
	}
	h, err := json.Marshal(hdr)
	if err != nil {
		return err
	}
	for len(h)%8 != 0 {
		h = append(h, ' ')
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	return os.WriteFile(path, append(append(out, h...), body...), 0o644)
}
