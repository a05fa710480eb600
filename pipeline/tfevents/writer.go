package tfevents

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// FilePrefix starts the name of every event file (TensorBoard finds files by it).
const FilePrefix = "events.out.tfevents."

// fileSeq tells apart files one process creates within the same second.
var fileSeq atomic.Int64

// Writer appends events to one new event file.
type Writer struct {
	f    *os.File
	path string
	buf  []byte
}

// Create starts a new event file in dir (created if missing).
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	host, _ := os.Hostname()
	host = strings.NewReplacer("/", "_", string(os.PathSeparator), "_").Replace(host)
	if host == "" {
		host = "localhost"
	}
	name := fmt.Sprintf("%s%010d.%s.%d.%d", FilePrefix, time.Now().Unix(), host, os.Getpid(), fileSeq.Add(1))
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	w := &Writer{f: f, path: path}
	if err := w.write(Event{FileVersion: fileVersion}); err != nil {
		f.Close()
		os.Remove(path)
		return nil, err
	}
	return w, nil
}

// Path is the file being written.
func (w *Writer) Path() string { return w.path }

// write frames one event and writes it in one call, so a reader sees whole
// records (a crash mid-write leaves at most a truncated last one).
func (w *Writer) write(e Event) error {
	if e.WallTime == 0 {
		e.WallTime = float64(time.Now().UnixNano()) / 1e9
	}
	w.buf = appendRecord(w.buf[:0], appendEvent(nil, e))
	if _, err := w.f.Write(w.buf); err != nil {
		return fmt.Errorf("tfevents %s: %w", w.path, err)
	}
	return nil
}

// Restart marks a job that resumes at step: TensorBoard drops the events
// earlier files hold for step and later (the resumed job redoes them).
func (w *Writer) Restart(step int64) error {
	return w.write(Event{Step: step, SessionStart: true})
}

// Scalars writes one event holding values (tag → value) at step. Values
// that are not finite in float32 (a skipped step's loss) are left out; an
// event with none left is not written.
func (w *Writer) Scalars(step int64, values map[string]float64) error {
	kept := make(map[string]float32, len(values))
	for tag, v := range values {
		f := float32(v)
		if tag == "" || math.IsNaN(v) || math.IsInf(float64(f), 0) {
			continue
		}
		kept[tag] = f
	}
	if len(kept) == 0 {
		return nil
	}
	return w.write(Event{Step: step, Scalars: kept})
}

// Close closes the file.
func (w *Writer) Close() error {
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("tfevents %s: %w", w.path, err)
	}
	return nil
}

// ReadFile reads every event of one file, checking each record's
// checksums. A truncated last record (a writer stopped mid-write, or still
// writing) ends the file as TensorBoard's reader does; a checksum mismatch
// or a malformed event is an error naming the file.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	var out []Event
	for i := 0; ; i++ {
		rec, err := readRecord(r)
		if err == io.EOF || errors.Is(err, errTruncated) {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("tfevents %s: record %d: %w", path, i, err)
		}
		e, err := parseEvent(rec)
		if err != nil {
			return nil, fmt.Errorf("tfevents %s: record %d: %w", path, i, err)
		}
		out = append(out, e)
	}
}

// Files lists the event files in dir, oldest first (by name, which starts
// with the creation time).
func Files(dir string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, FilePrefix+"*"))
	if err != nil {
		return nil, fmt.Errorf("tfevents: %w", err)
	}
	return files, nil
}
