package train

import (
	"fmt"
	"os"
	"path/filepath"
)

// The disk a run needs. A run's checkpoints hold the trained weights and
// AdamW's two moments (for a full fine-tune of a 0.5B model, 6 GB each),
// Keep of them at once and one more while the next is written, and the
// caller then writes the trained model beside them. A run that finds the
// disk full at its last checkpoint or export has spent its hours for
// nothing, so Loop.Run checks before the first step.

// DiskError is Loop.Run's refusal: the run's folder's filesystem has less
// free space than the run would still write there.
type DiskError struct {
	Dir        string
	Need, Free int64
	Checkpoint int64 // one checkpoint's bytes
	Keep       int   // checkpoints kept
	Export     int64 // what the caller writes after the run (Loop.ExportBytes)
}

func (e *DiskError) Error() string {
	what := fmt.Sprintf("%d checkpoints of %s (the trained weights and AdamW's two moments; %d are kept, and one more exists while the next is written)",
		e.Keep+1, FormatBytes(e.Checkpoint), e.Keep)
	if e.Export > 0 {
		what += fmt.Sprintf(", then the trained model, %s", FormatBytes(e.Export))
	}
	return fmt.Sprintf("not enough disk space for %s: the run still writes up to %s there — %s — and %s is free; free space on that disk or put the run's folder on a larger one",
		e.Dir, FormatBytes(e.Need), what, FormatBytes(e.Free))
}

// checkpointBytes is the size of one checkpoint of t: its weights and,
// with an optimizer, the two moments (safetensors headers aside).
func checkpointBytes(t *Trainer) int64 {
	var n int64
	for _, p := range t.Params {
		n += int64(len(p.Data)) * 4
	}
	if t.Opt != nil {
		n *= 3
	}
	return n
}

// DirBytes sums the sizes of the files under dir (0 when it is missing).
func DirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// checkDisk refuses a run whose checkpoints and export would not fit the
// free space of Dir's filesystem: at most Keep+1 checkpoints while one is
// written, or Keep and the export, less the checkpoints already there (a
// resumed run). Where the free space cannot be read it does not refuse.
func (l *Loop) checkDisk() error {
	free, ok := freeDisk(l.Dir)
	if !ok {
		return nil
	}
	keep := l.Keep
	if keep < 1 {
		keep = 2
	}
	c := checkpointBytes(l.Trainer)
	var existing int64
	if old, err := filepath.Glob(filepath.Join(l.Dir, "step-*")); err == nil {
		for _, d := range old {
			existing += DirBytes(d)
		}
	}
	need := max(int64(keep+1)*c, int64(keep)*c+l.ExportBytes) - existing
	if need <= free {
		return nil
	}
	return &DiskError{Dir: l.Dir, Need: need, Free: free, Checkpoint: c, Keep: keep, Export: l.ExportBytes}
}

// freeDisk is FreeDisk; tests set it to a disk of their size.
var freeDisk = FreeDisk

// RemoveCheckpoints deletes the checkpoints under dir (the step-*
// folders and LATEST), keeping the logs and run.json: what a finished
// stage, whose trained model is written, no longer needs.
func RemoveCheckpoints(dir string) error {
	old, err := filepath.Glob(filepath.Join(dir, "step-*"))
	if err != nil {
		return err
	}
	// LATEST first: a crash part way leaves no pointer to a removed folder.
	if err := os.Remove(filepath.Join(dir, latestFile)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove checkpoints: %w", err)
	}
	for _, d := range old {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove checkpoints: %w", err)
		}
	}
	return nil
}
