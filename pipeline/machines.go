package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/onnx/train"
)

// machinesFile, in a training stage's folder (beside its checkpoints
// folder, which a stage refused before its first step must not leave),
// lists the machines (ort.Machine) its steps ran on: a stage resumed on another CPU kind,
// thread count or runtime is not what a fresh run on either reproduces, and
// its summary says so (stageMachine).
const machinesFile = "machines.json"

// machineSpan is the machine a stage's steps from FromStep on ran on.
type machineSpan struct {
	FromStep int    `json:"from_step"`
	Machine  string `json:"machine"`
}

// resumeStep is the step of the newest checkpoint in ckDir (0: none).
func resumeStep(ckDir string) (int, error) {
	sub, err := train.LatestCheckpoint(ckDir)
	if errors.Is(err, train.ErrNoCheckpoint) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(filepath.Join(sub, "state.json"))
	if err != nil {
		return 0, fmt.Errorf("read checkpoint %s: %w", sub, err)
	}
	var st struct {
		Step int `json:"step"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return 0, fmt.Errorf("read checkpoint %s: state.json: %w", sub, err)
	}
	return st.Step, nil
}

// recordMachine notes, before a training stage trains in this process,
// that its steps from the checkpoint it resumes from on run on machine:
// a span is added when the machine differs from the last one; spans past
// that checkpoint are dropped (their steps are redone).
func recordMachine(ckDir, machine string) error {
	from, err := resumeStep(ckDir)
	if err != nil {
		return err
	}
	var spans []machineSpan
	path := filepath.Join(filepath.Dir(ckDir), machinesFile)
	if err := readJSON(path, &spans); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w (delete %s to redo the stage)", err, filepath.Dir(ckDir))
	}
	kept := spans[:0]
	for _, s := range spans {
		if s.FromStep <= from {
			kept = append(kept, s)
		}
	}
	if len(kept) > 0 && kept[len(kept)-1].Machine == machine {
		if len(kept) == len(spans) {
			return nil
		}
	} else {
		kept = append(kept, machineSpan{FromStep: from + 1, Machine: machine})
	}
	return writeJSON(path, kept)
}

// stageMachine is the machine a finished stage of steps steps records in
// its summary: the one it ran on, or, when it was resumed on another, each
// with its steps (recordMachine).
func stageMachine(ckDir string, steps int) (string, error) {
	var spans []machineSpan
	if err := readJSON(filepath.Join(filepath.Dir(ckDir), machinesFile), &spans); err != nil {
		return "", err
	}
	if len(spans) == 1 && spans[0].FromStep == 1 {
		return spans[0].Machine, nil
	}
	var parts []string
	if len(spans) > 0 && spans[0].FromStep > 1 {
		parts = append(parts, fmt.Sprintf("steps 1–%d: not recorded (by an older tagpr)", spans[0].FromStep-1))
	}
	for i, s := range spans {
		to := steps
		if i+1 < len(spans) {
			to = spans[i+1].FromStep - 1
		}
		parts = append(parts, fmt.Sprintf("steps %d–%d: %s", s.FromStep, to, s.Machine))
	}
	s := strings.Join(parts, "; then ")
	if len(spans) > 1 {
		s += " (resumed on another machine: a fresh run on one of them does not reproduce it)"
	}
	return s, nil
}
