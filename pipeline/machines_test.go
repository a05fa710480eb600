package pipeline

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A stage's machine spans follow its checkpoints: a process that resumes
// on another machine adds one; steps a killed process ran past its last
// checkpoint are redone, so its span goes.
func TestRecordMachineFollowsCheckpoints(t *testing.T) {
	ck := filepath.Join(t.TempDir(), "checkpoints")
	checkpoint := func(step int) {
		t.Helper()
		name := "step-0000000" + string(rune('0'+step))
		if err := os.MkdirAll(filepath.Join(ck, name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ck, name, "state.json"), []byte(`{"step": `+string(rune('0'+step))+`, "epoch": 0}`), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ck, "LATEST"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	record := func(m string) {
		t.Helper()
		if err := recordMachine(ck, m); err != nil {
			t.Fatal(err)
		}
	}
	record("A")
	checkpoint(4)
	record("A") // resumed on the same machine: still one span
	if got, err := stageHistory(ck, 9); err != nil || got.Machine != "A" || len(got.ResumedAfter) != 1 || got.ResumedAfter[0] != 4 || got.Started == "" {
		t.Fatalf("one machine, resumed after step 4: %+v, %v", got, err)
	}
	record("B") // resumed after step 4 on B, killed before its first checkpoint
	record("A") // B's steps are redone on A
	if got, _ := stageHistory(ck, 9); got.Machine != "A" {
		t.Fatalf("B's redone steps still counted: %q", got.Machine)
	}
	record("B")
	checkpoint(6)
	record("A")
	got, err := stageHistory(ck, 9)
	want := "steps 1–4: A; then steps 5–6: B; then steps 7–9: A (resumed on another machine"
	if err != nil || !strings.HasPrefix(got.Machine, want) || fmt.Sprint(got.ResumedAfter) != "[4 6]" {
		t.Fatalf("stageHistory = %+v, %v; want %q…, resumed after [4 6]", got, err, want)
	}
}
