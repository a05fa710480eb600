package train

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lockChildEnv makes the test binary a process that holds a run folder's
// lock until it is killed (see TestMain).
const lockChildEnv = "TAGPR_TRAIN_LOCK_CHILD"

func lockChild(dir string) {
	lock := LockRunDir
	// "shards:whole:DIR" or "shards:shard:DIR": LockRunShards' holds.
	if rest, ok := strings.CutPrefix(dir, "shards:"); ok {
		kind, d, _ := strings.Cut(rest, ":")
		dir, lock = d, func(d string) (*RunLock, error) { return LockRunShards(d, kind == "whole") }
	}
	if _, err := lock(dir); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("locked")
	time.Sleep(time.Hour)
	os.Exit(0)
}

// startLockHolder starts a second process that takes dir's lock.
func startLockHolder(t *testing.T, dir string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockChildEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, _ := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "locked" {
		t.Fatalf("lock holder: %q", line)
	}
	return cmd
}

// TestRunLockTwoProcesses: while another process holds a run folder, taking
// it fails naming that process's PID; once the holder is SIGKILLed the lock
// is free (the kernel drops it with the process: no stale lock).
func TestRunLockTwoProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run", "checkpoint") // created by the holder
	holder := startLockHolder(t, dir)
	_, err := LockRunDir(dir)
	var le *LockedError
	if !errors.As(err, &le) || le.PID != holder.Process.Pid || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", holder.Process.Pid)) {
		t.Fatalf("second writer: %v; want a LockedError naming pid %d", err, holder.Process.Pid)
	}
	// A training loop on that folder is refused the same way, before any work.
	tg, data := guardLM(t, 0.02)
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, err = (&Loop{Trainer: tr, Data: data, BatchSize: 2, Steps: 2, Dir: dir}).Run(t.Context())
	if !errors.As(err, &le) {
		t.Fatalf("loop on a held folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, LogFile)); err == nil {
		t.Fatal("the refused loop wrote a log")
	}
	holder.Process.Kill()
	holder.Wait()
	lk, err := LockRunDir(dir)
	if err != nil {
		t.Fatalf("after the holder was killed: %v", err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, LockFile))
	if strings.TrimSpace(string(b)) != fmt.Sprint(os.Getpid()) {
		t.Fatalf("lock file holds %q, want this pid %d", b, os.Getpid())
	}
	lk.Unlock()
}

// TestRunLockNestedInOneProcess: the same process may take a folder it holds
// (a command and the loop it runs); the folder is free after the last
// Unlock, for another process too.
func TestRunLockNestedInOneProcess(t *testing.T) {
	dir := t.TempDir()
	a, err := LockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := LockRunDir(filepath.Join(dir, ".")) // the same folder, spelled otherwise
	if err != nil {
		t.Fatalf("nested lock: %v", err)
	}
	a.Unlock()
	a.Unlock() // twice does nothing
	heldMu.Lock()
	n := len(held)
	heldMu.Unlock()
	if n != 1 {
		t.Fatalf("%d folders held after one of two unlocks, want 1", n)
	}
	b.Unlock()
	startLockHolder(t, dir) // another process can take it now
}

// TestLoopTwoInOneFolder: two training loops of one process in one folder
// (two trainers given the same output folder) are refused like two
// processes, not left to interleave their checkpoints and logs; once the
// first ends the folder is free for the next (which finds the run done).
func TestLoopTwoInOneFolder(t *testing.T) {
	dir := t.TempDir()
	newLoop := func(progress ProgressFunc) *Loop {
		tg, data := guardLM(t, 0.02)
		tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: 2}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tr.Close)
		return &Loop{Trainer: tr, Data: data, BatchSize: 2, Steps: 2, Dir: dir, Seed: 1, Progress: progress}
	}
	second := newLoop(nil)
	var during error
	first := newLoop(func(p Progress) {
		if p.Step == 1 && during == nil { // the first loop is running: start the second
			_, during = second.Run(t.Context())
		}
	})
	if _, err := first.Run(t.Context()); err != nil {
		t.Fatal(err)
	}
	var le *LockedError
	if !errors.As(during, &le) || !le.InProcess || !strings.Contains(during.Error(), "another training loop of this process") {
		t.Fatalf("a second loop in the folder while the first ran: %v; want a LockedError naming this process's other loop", during)
	}
	if logged, err := ReadLog[StepLog](filepath.Join(dir, LogFile)); err != nil || len(logged) != 2 {
		t.Fatalf("log of the first loop: %d steps, %v; want 2", len(logged), err)
	}
	if st, err := second.Run(t.Context()); err != nil || st.Step != 2 {
		t.Fatalf("the second loop after the first ended: step %d, %v; want the finished run", st.Step, err)
	}
}

// TestRunLockParts: parts of one folder lock apart (each its own file, named
// after the part) and apart from the whole folder's lock.
func TestRunLockParts(t *testing.T) {
	dir := t.TempDir()
	whole, err := LockRunDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer whole.Unlock()
	a, err := LockRunPart(dir, "shard 2/8")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Unlock()
	b, err := LockRunPart(dir, "shard 3/8")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Unlock()
	for _, f := range []string{LockFile, ".tagpr-shard-2-8.lock", ".tagpr-shard-3-8.lock"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("lock file %s: %v", f, err)
		}
	}
	if _, err := LockRunPart(dir, ""); err == nil {
		t.Error("empty part name accepted")
	}
}

// TestRunLockShards: shards write a parts folder side by side, but a whole
// (unsharded) run and a shard never do, across processes and within one;
// a shard refused names the whole run's process.
func TestRunLockShards(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "out.parquet.parts")
	shard := startLockHolder(t, "shards:shard:"+dir)
	var se *ShardsLockedError
	if _, err := LockRunShards(dir, true); !errors.As(err, &se) || !se.Whole || !strings.Contains(err.Error(), "sharded workers") {
		t.Fatalf("a whole run beside a shard: %v; want a ShardsLockedError", err)
	}
	l, err := LockRunShards(dir, false)
	if err != nil {
		t.Fatalf("a second shard beside one: %v", err)
	}
	if _, err := LockRunShards(dir, true); !errors.As(err, &se) {
		t.Fatalf("a whole run in the process of a shard: %v", err)
	}
	l.Unlock()
	shard.Process.Kill()
	shard.Wait()

	whole := startLockHolder(t, "shards:whole:"+dir)
	for _, w := range []bool{false, true} {
		_, err := LockRunShards(dir, w)
		if !errors.As(err, &se) || se.Whole != w {
			t.Fatalf("whole %v beside a whole run: %v; want a ShardsLockedError", w, err)
		}
		if !w && (se.PID != whole.Process.Pid || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", whole.Process.Pid))) {
			t.Errorf("a shard refused: %v; want the whole run's pid %d named", err, whole.Process.Pid)
		}
	}
	whole.Process.Kill()
	whole.Wait()
	l, err = LockRunShards(dir, true)
	if err != nil {
		t.Fatalf("after the holder's end: %v", err)
	}
	if _, err := LockRunShards(dir, false); !errors.As(err, &se) || se.Whole {
		t.Fatalf("a shard in the process of a whole run: %v", err)
	}
	l.Unlock()
}
