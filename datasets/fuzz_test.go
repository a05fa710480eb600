package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadTable feeds corrupted Arrow (file and stream) and Parquet bytes to
// every table reader: a broken file must give an error naming it, never a
// panic. The seeds are the pyarrow-written fixtures.
func FuzzReadTable(f *testing.F) {
	seeds, err := filepath.Glob(filepath.Join("testdata", "pyarrow", "*"))
	if err != nil || len(seeds) == 0 {
		f.Fatalf("no pyarrow fixtures: %v", err)
	}
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	readers := []func(string) error{
		func(p string) error { _, _, err := ReadExamples(p, ReadOptions{BatchRows: 3}); return err },
		func(p string) error { _, err := ReadChains(p, ReadOptions{}); return err },
		func(p string) error { _, err := ReadRollouts(p, ReadOptions{}); return err },
		func(p string) error { _, err := ReadPredictions(p, ReadOptions{}); return err },
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "table")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		// Each reader refuses the other kinds by schema; the decoding past
		// the schema check is what the reader of the file's own kind runs.
		for _, read := range readers {
			if err := read(path); err != nil && !strings.Contains(err.Error(), path) {
				t.Fatalf("error does not name the file: %v", err)
			}
		}
	})
}

// A damaged byte anywhere in an Arrow file, an Arrow stream or a Parquet
// file (each byte of the first and last 384, where the schemas and footers
// are, and every seventh between, inverted in turn) is read or refused with an
// error naming the file: never a panic, never a runaway allocation.
// FuzzReadTable searches further (make fuzz).
func TestEveryByteDamaged(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"user_LaMP_3.arrow", "user_LaMP_3.stream.arrow", "user_LaMP_3.parquet", "rollouts.arrow"} {
		good, err := os.ReadFile(filepath.Join("testdata", "pyarrow", name))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, name)
		refused, tried := 0, 0
		for i := range good {
			if i >= 384 && i < len(good)-384 && i%7 != 0 {
				continue
			}
			tried++
			bad := append([]byte(nil), good...)
			bad[i] ^= 0xFF
			if err := os.WriteFile(path, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			_, _, errEx := ReadExamples(path, ReadOptions{BatchRows: 2})
			_, errRo := ReadRollouts(path, ReadOptions{})
			for _, err := range []error{errEx, errRo} {
				if err != nil && !strings.Contains(err.Error(), path) {
					t.Fatalf("%s, byte %d inverted: the error does not name the file: %v", name, i, err)
				}
			}
			if errEx != nil && errRo != nil {
				refused++
			}
		}
		// Most damage is caught (by the format's own checks, the schema
		// check or the batch validation); what passes changed a value only.
		if refused < tried/4 {
			t.Errorf("%s: only %d of %d damaged copies refused", name, refused, tried)
		}
		t.Logf("%s: %d of %d damaged copies refused", name, refused, tried)
	}
}

// FuzzLaMPJSON feeds damaged LaMP questions and outputs files (seeded with
// the fixtures of LaMP 2M, 3 and 5) to their readers: an error naming the
// file, never a panic.
func FuzzLaMPJSON(f *testing.F) {
	for _, task := range []string{"LaMP_2M", "LaMP_3", "LaMP_5"} {
		for _, kind := range []string{"dev_questions.json", "dev_outputs.json"} {
			b, err := os.ReadFile(filepath.Join("testdata", "lamp", "user", task, kind))
			if err != nil {
				f.Fatal(err)
			}
			if len(b) > 4096 {
				b = b[:4096] // a cut file is a seed too
			}
			f.Add(b, task)
		}
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte, task string) {
		tk, err := ParseTask(task)
		if err != nil {
			return
		}
		path := filepath.Join(dir, "lamp.json")
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, _, err := ScanQuestions(path, tk, func(*Example) error { return nil }); err != nil && !strings.Contains(err.Error(), path) {
			t.Fatalf("questions: the error does not name the file: %v", err)
		}
		if _, err := ReadOutputs(path, tk); err != nil && !strings.Contains(err.Error(), path) {
			t.Fatalf("outputs: the error does not name the file: %v", err)
		}
	})
}
