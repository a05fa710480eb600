package train

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
)

// childEnv makes the test binary act as a training process (see TestMain).
const childEnv = "TAGPR_TRAIN_RESUME_CHILD"

const childSteps = 24

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockChildEnv); dir != "" {
		lockChild(dir) // never returns
	}
	if dir := os.Getenv(childEnv); dir != "" {
		if err := resumeChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// resumeChild trains a fixed model on fixed data with a checkpoint after
// every step, printing each finished step.
func resumeChild(dir string) error {
	cfg := tinyConfig(lm.Llama, "float32")
	cfg.InitStd = 0.05
	m, err := lm.Build(cfg)
	if err != nil {
		return err
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 9})
	if err != nil {
		return err
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 5e-3, Warmup: 3, Total: childSteps}, WeightDecay: 0.1, ClipNorm: 0.5})
	if err != nil {
		return err
	}
	defer tr.Close()
	out := bufio.NewWriter(os.Stdout)
	loop := &Loop{Trainer: tr, Data: &LMDataset{Rows: randomRows(4, 7, 5, 9, 32), SeqLen: 9, Graph: tg},
		BatchSize: 2, Accum: 2, Steps: childSteps, Dir: dir, CheckpointEvery: 1, Seed: 42,
		Progress: func(p Progress) {
			if p.Note == "" {
				fmt.Fprintf(out, "step %d\n", p.Step)
				out.Flush()
			}
		}}
	if st, err := LoadCheckpoint(dir, tr.Params, nil); err == nil {
		fmt.Fprintf(out, "resumed %d\n", st.Step)
		out.Flush()
	}
	_, err = loop.Run(context.Background())
	return err
}

func runChild(t *testing.T, dir string, killAt int) (lines []string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	killed := false
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if killAt > 0 && sc.Text() == fmt.Sprintf("step %d", killAt) {
			cmd.Process.Kill()
			killed = true
			break
		}
	}
	err = cmd.Wait()
	if !killed && err != nil {
		t.Fatalf("child: %v\n%s", err, stderr.String())
	}
	if killAt > 0 && !killed {
		t.Fatalf("child finished before step %d", killAt)
	}
	return lines
}

// TestKillAndResumeIsBitIdentical kills a training process at a random step
// and resumes it; the final weights and moments equal an uninterrupted run's.
func TestKillAndResumeIsBitIdentical(t *testing.T) {
	a, b := t.TempDir(), t.TempDir()
	runChild(t, a, 0)
	killAt := 2 + rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1)).IntN(childSteps-4)
	t.Logf("killing at step %d", killAt)
	runChild(t, b, killAt)
	lines := runChild(t, b, 0)
	if len(lines) == 0 || !strings.HasPrefix(lines[0], "resumed ") || lines[0] == "resumed 0" {
		t.Fatalf("second run did not resume from a checkpoint: %v", lines)
	}
	t.Logf("%s; %d steps redone", lines[0], len(lines)-1)
	for _, f := range []string{weightsFile, optimizerFile} {
		pa, _ := LatestCheckpoint(a)
		pb, _ := LatestCheckpoint(b)
		da, err := os.ReadFile(filepath.Join(pa, f))
		if err != nil {
			t.Fatal(err)
		}
		db, err := os.ReadFile(filepath.Join(pb, f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Fatalf("%s differs between the uninterrupted and the resumed run", f)
		}
	}
	// The log holds each step once.
	log, err := os.ReadFile(filepath.Join(b, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "\n"); n != childSteps {
		t.Fatalf("log has %d lines, want %d", n, childSteps)
	}
}
