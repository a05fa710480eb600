package pipeline

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/train"
)

// machinesFile, in a training stage's folder (beside its checkpoints
// folder, which a stage refused before its first step must not leave),
// lists the machines (ort.Machine) its steps ran on: a stage resumed on another CPU kind,
// thread count or runtime is not what a fresh run on either reproduces, and
// its summary says so (stageHistory).
const machinesFile = "machines.json"

// machineSpan is one process's part of a stage: the machine its steps
// from FromStep on ran on.
type machineSpan struct {
	FromStep int    `json:"from_step"`
	Machine  string `json:"machine"`
	Started  string `json:"started,omitempty"` // when the process began (RFC 3339, UTC)
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
// that its steps from the checkpoint it resumes from on run on machine,
// from now on; spans past that checkpoint are dropped (their steps are
// redone).
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
	kept = append(kept, machineSpan{FromStep: from + 1, Machine: machine, Started: time.Now().UTC().Format(time.RFC3339)})
	return writeJSON(path, kept)
}

// stageRuns is what a finished stage's summary records of the processes
// that trained it (recordMachine).
type stageRuns struct {
	// Machine is the machine it ran on, or, when it was resumed on
	// another, each with its steps.
	Machine string
	// ResumedAfter are the steps later processes resumed after (a resume
	// on the same machine reproduces the uninterrupted run bit for bit).
	ResumedAfter []int
	// Started is when its first process began (RFC 3339, UTC; "" when not
	// recorded).
	Started string
}

// stageHistory reads a finished stage's runs (of steps steps) from the
// machines file beside its checkpoints folder ckDir.
func stageHistory(ckDir string, steps int) (stageRuns, error) {
	var raw []machineSpan
	if err := readJSON(filepath.Join(filepath.Dir(ckDir), machinesFile), &raw); err != nil {
		return stageRuns{}, err
	}
	var out stageRuns
	var spans []machineSpan // raw, consecutive runs on one machine merged
	for i, s := range raw {
		if i == 0 {
			out.Started = s.Started
		}
		if i > 0 || s.FromStep > 1 {
			out.ResumedAfter = append(out.ResumedAfter, s.FromStep-1)
		}
		if len(spans) == 0 || spans[len(spans)-1].Machine != s.Machine {
			spans = append(spans, s)
		}
	}
	if len(spans) == 1 && spans[0].FromStep == 1 {
		out.Machine = spans[0].Machine
		return out, nil
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
	out.Machine = strings.Join(parts, "; then ")
	if len(spans) > 1 {
		out.Machine += " (resumed on another machine: a fresh run on one of them does not reproduce it)"
	}
	return out, nil
}
