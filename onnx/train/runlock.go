package train

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// LockFile is the file of a run folder that its one writer holds locked.
const LockFile = ".tagpr.lock"

// RunLock is one writer's hold on a run folder (LockRunDir).
type RunLock struct {
	key  string
	once sync.Once
}

// LockedError is LockRunDir's error when another process writes to the
// folder, and Loop.Run's when another Loop of this process runs in it.
type LockedError struct {
	Dir  string
	Part string // LockRunPart's part; "" for the whole folder
	PID  int    // the holder's process id; 0 if it could not be read
	// InProcess: the holder is another Loop of this process (PID is ours).
	InProcess bool
}

func (e *LockedError) Error() string {
	holder := "another process"
	if e.InProcess {
		holder = "another training loop of this process"
	} else if e.PID > 0 {
		holder = fmt.Sprintf("another tagpr process (pid %d)", e.PID)
	}
	if e.Part != "" {
		return fmt.Sprintf("%s (%s) is in use by %s: one writer per part; wait for it to end or write elsewhere", e.Dir, e.Part, holder)
	}
	return fmt.Sprintf("%s is in use by %s: one writer per run folder; wait for it to end or write elsewhere", e.Dir, holder)
}

// heldLock is a lock this process holds, shared by nested LockRunDir calls.
type heldLock struct {
	f      *os.File
	refs   int
	shared bool // LockRunShards' shared hold
	loop   bool // a Loop runs in the folder (claimLoop)
}

var (
	heldMu sync.Mutex
	held   = map[string]*heldLock{}
)

// LockRunDir creates dir (and its parents) if needed and takes the run
// folder's exclusive lock: flock(2) on dir/.tagpr.lock, which the kernel
// drops when the process ends, however it ends (a crash or SIGKILL leaves no
// stale lock). The file holds the holder's PID, so a second process is
// refused with a *LockedError naming it. Within one process the lock is
// shared: nested calls for the same folder succeed and the last Unlock
// releases it; but only one Loop at a time runs in a folder (a second one
// gets a *LockedError too).
func LockRunDir(dir string) (*RunLock, error) { return lockIn(dir, "") }

// LockRunPart takes the lock of one part of a folder that several processes
// share by design, each writing its own files (the shards of a fan-out
// stage in OUT.parts/): dir/.tagpr-PART.lock, with LockRunDir's semantics.
// part names the writer ("shard 2/8"); characters unsafe in a file name
// become '-'.
func LockRunPart(dir, part string) (*RunLock, error) {
	if part == "" {
		return nil, fmt.Errorf("lock run folder %s: empty part name", dir)
	}
	return lockIn(dir, part)
}

func lockIn(dir, part string) (*RunLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock run folder: %w", err)
	}
	abs, err := filepath.Abs(dir)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	name := LockFile
	if part != "" {
		name = ".tagpr-" + strings.Map(func(r rune) rune {
			if r == '/' || r == '\\' || r == ' ' || r < 0x20 {
				return '-'
			}
			return r
		}, part) + ".lock"
	}
	key := filepath.Join(abs, name)
	heldMu.Lock()
	defer heldMu.Unlock()
	if h := held[key]; h != nil {
		h.refs++
		return &RunLock{key: key}, nil
	}
	f, err := os.OpenFile(key, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, &LockedError{Dir: dir, Part: part, PID: holderPID(key)}
		}
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt(pid, 0)
	}
	if err != nil {
		f.Close() // closing drops the lock
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	held[key] = &heldLock{f: f, refs: 1}
	return &RunLock{key: key}, nil
}

// ShardsLockedError is LockRunShards' refusal: a folder's shards are being
// written by sharded workers while a whole run asks, or by a whole run while a
// shard asks.
type ShardsLockedError struct {
	Dir   string
	Whole bool // the refused writer is a whole (unsharded) run
	PID   int  // the whole run's process id, when it holds the folder; 0 if not known
}

func (e *ShardsLockedError) Error() string {
	if e.Whole {
		return fmt.Sprintf("%s is being written by sharded workers (--shard i/N): an unsharded run would write the same batches beside them; wait for them to end, or run as one of the shards", e.Dir)
	}
	holder := "an unsharded run"
	if e.PID > 0 {
		holder = fmt.Sprintf("an unsharded run (pid %d)", e.PID)
	}
	return fmt.Sprintf("%s is being written by %s, whose batches include this shard's; wait for it to end", e.Dir, holder)
}

// LockRunShards takes the lock that keeps a parts folder's sharded writers
// and a whole (unsharded) run apart: shared for a shard (any number of
// shards write side by side, each under its own LockRunPart), exclusive for
// a whole run, which writes every batch. Without it a whole run beside
// shards wrote the same batches as they did, and the parts then refused to
// merge. flock(2) on dir/.tagpr-shards.lock, as LockRunDir; within one
// process holds of the same kind nest.
func LockRunShards(dir string, whole bool) (*RunLock, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock run folder: %w", err)
	}
	key, err := filepath.Abs(filepath.Join(dir, ".tagpr-shards.lock"))
	if err != nil {
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	heldMu.Lock()
	defer heldMu.Unlock()
	if h := held[key]; h != nil {
		if h.shared == whole { // a whole run and a shard in one process
			return nil, &ShardsLockedError{Dir: dir, Whole: whole, PID: os.Getpid()}
		}
		h.refs++
		return &RunLock{key: key}, nil
	}
	f, err := os.OpenFile(key, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	how := syscall.LOCK_SH
	if whole {
		how = syscall.LOCK_EX
	}
	if err := flock(f, how|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			pid := 0
			if !whole {
				pid = holderPID(key)
			}
			return nil, &ShardsLockedError{Dir: dir, Whole: whole, PID: pid}
		}
		return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
	}
	if whole { // the one holder: its PID names it to a refused shard
		pid := []byte(strconv.Itoa(os.Getpid()) + "\n")
		if err := f.Truncate(0); err == nil {
			_, err = f.WriteAt(pid, 0)
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock run folder %s: %w", dir, err)
		}
	}
	held[key] = &heldLock{f: f, refs: 1, shared: !whole}
	return &RunLock{key: key}, nil
}

// Unlock releases this hold; the folder is free once every hold of the
// process is released. Calling it again does nothing.
func (l *RunLock) Unlock() {
	if l == nil {
		return
	}
	l.once.Do(func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		h := held[l.key]
		if h == nil {
			return
		}
		if h.refs--; h.refs == 0 {
			delete(held, l.key)
			h.f.Close() // the PID stays in the file; only the flock counts
		}
	})
}

// claimLoop marks the folder l holds as written by a running Loop: two Loops
// of one process in one folder (two trainers given the same output folder)
// would interleave their checkpoints and logs, and the process's shared
// lock does not keep them apart. release ends the claim.
func (l *RunLock) claimLoop(dir string) (release func(), err error) {
	heldMu.Lock()
	defer heldMu.Unlock()
	h := held[l.key]
	if h == nil {
		return nil, fmt.Errorf("lock run folder %s: not held", dir)
	}
	if h.loop {
		return nil, &LockedError{Dir: dir, PID: os.Getpid(), InProcess: true}
	}
	h.loop = true
	return func() {
		heldMu.Lock()
		defer heldMu.Unlock()
		if h := held[l.key]; h != nil {
			h.loop = false
		}
	}, nil
}

// flock retries on EINTR (a signal arriving during the call).
func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}

// holderPID reads the PID the holder wrote; a holder that has just taken
// the lock may not have written it yet, so an empty file is read again
// for a moment.
func holderPID(path string) int {
	for try := 0; try < 20; try++ {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0
		}
		if s := strings.TrimSpace(string(b)); s != "" {
			pid, _ := strconv.Atoi(s)
			return pid
		}
		time.Sleep(5 * time.Millisecond)
	}
	return 0
}
