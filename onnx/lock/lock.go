package lock

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
	"github.com/pelletier/go-toml/v2"
)

// FileName is the lock file's name; Find looks for it in a directory and its parents.
const FileName = "models.lock"

// Kind says what an artifact is for.
type Kind string

const (
	Runtime   Kind = "runtime"
	Model     Kind = "model"
	Tokenizer Kind = "tokenizer"
	Dataset   Kind = "dataset"
	// GPURuntime is a wheel of the GPU runtime (ONNX Runtime with the CUDA
	// provider, the CUDA libraries): fetched only by `tagpr setup --gpu`.
	GPURuntime Kind = "gpu-runtime"
)

const kindList = "runtime|model|tokenizer|dataset|gpu-runtime"

func (k Kind) valid() bool {
	switch k {
	case Runtime, Model, Tokenizer, Dataset, GPURuntime:
		return true
	}
	return false
}

// Entry pins one artifact.
type Entry struct {
	Name string `toml:"name"`
	Kind Kind   `toml:"kind"`
	// Source says where `tagpr setup` gets the artifact, e.g.
	// "npm:onnxruntime-node@1.30.0#package/bin/napi-v6/linux/x64/libonnxruntime.so.1".
	// Empty for artifacts that are made or committed locally.
	Source string `toml:"source,omitempty"`
	// Path is relative to the directory holding models.lock (or absolute).
	Path   string `toml:"path"`
	Size   int64  `toml:"size"`
	SHA256 string `toml:"sha256"`
}

// File is a parsed models.lock.
type File struct {
	Path    string // where it was read from / will be written to
	Entries []Entry
}

type document struct {
	Artifact []Entry `toml:"artifact"`
}

// MismatchError reports a pinned file whose content differs from its pin.
type MismatchError struct {
	File             string
	Expected, Actual string
	ExpectedSize     int64
	ActualSize       int64
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("%s does not match %s: expected sha256 %s (%d bytes), got %s (%d bytes); "+
		"if the change is intended, run `tagpr models lock %s`",
		e.File, FileName, e.Expected, e.ExpectedSize, e.Actual, e.ActualSize, e.File)
}

// ErrNotFound is returned by Find when no models.lock exists above a directory.
var ErrNotFound = errors.New(FileName + " not found")

// Find returns the path of the nearest models.lock in dir or its parents.
func Find(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := abs; ; {
		p := filepath.Join(d, FileName)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("%w in %s or any parent", ErrNotFound, abs)
		}
		d = parent
	}
}

// Load reads and validates a lock file.
func Load(path string) (*File, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var doc document
	dec := toml.NewDecoder(bytes.NewReader(raw)).DisallowUnknownFields()
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	f := &File{Path: path, Entries: doc.Artifact}
	seen := map[string]bool{}
	for i, e := range f.Entries {
		switch {
		case e.Name == "":
			return nil, fmt.Errorf("%s: artifact %d has no name", path, i+1)
		case seen[e.Name]:
			return nil, fmt.Errorf("%s: artifact %q listed twice", path, e.Name)
		case !e.Kind.valid():
			return nil, fmt.Errorf("%s: artifact %q has kind %q, want "+kindList, path, e.Name, e.Kind)
		case e.Path == "":
			return nil, fmt.Errorf("%s: artifact %q has no path", path, e.Name)
		case len(e.SHA256) != 64:
			return nil, fmt.Errorf("%s: artifact %q has sha256 %q, want 64 hex digits", path, e.Name, e.SHA256)
		}
		seen[e.Name] = true
	}
	return f, nil
}

// Dir is the directory relative paths are resolved against.
func (f *File) Dir() string { return filepath.Dir(f.Path) }

// Abs resolves an entry's path.
func (f *File) Abs(e Entry) string {
	if filepath.IsAbs(e.Path) {
		return e.Path
	}
	return filepath.Join(f.Dir(), filepath.FromSlash(e.Path))
}

// Lookup finds an entry by name.
func (f *File) Lookup(name string) (Entry, bool) {
	for _, e := range f.Entries {
		if e.Name == name {
			return e, true
		}
	}
	return Entry{}, false
}

// ForPath finds the entry pinning a file path, if any.
func (f *File) ForPath(path string) (Entry, bool) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Entry{}, false
	}
	for _, e := range f.Entries {
		if filepath.Clean(f.Abs(e)) == filepath.Clean(abs) {
			return e, true
		}
	}
	return Entry{}, false
}

// Verify hashes the entry's file and compares it with the pin.
func (f *File) Verify(e Entry) error {
	return VerifyFile(f.Abs(e), e.SHA256, e.Size)
}

// VerifyAll checks every entry and returns one error per failing entry.
func (f *File) VerifyAll() []error {
	var errs []error
	for _, e := range f.Entries {
		if err := f.Verify(e); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name, err))
		}
	}
	return errs
}

// VerifyFile hashes path and compares it with the expected sha256 and size.
func VerifyFile(path, sha string, size int64) error {
	got, gotSize, err := HashFile(path)
	if err != nil {
		return err
	}
	if !strings.EqualFold(got, sha) || gotSize != size {
		return &MismatchError{File: path, Expected: sha, Actual: got, ExpectedSize: size, ActualSize: gotSize}
	}
	return nil
}

// HashFile returns the hex sha256 and size of a file.
func HashFile(path string) (string, int64, error) {
	fh, err := os.Open(path)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	defer fh.Close()
	h := sha256.New()
	n, err := io.Copy(h, fh)
	if err != nil {
		return "", 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// Upsert adds an entry or replaces the one with the same name.
func (f *File) Upsert(e Entry) {
	for i := range f.Entries {
		if f.Entries[i].Name == e.Name {
			f.Entries[i] = e
			return
		}
	}
	f.Entries = append(f.Entries, e)
}

// Pin hashes a file and upserts an entry for it; the path is stored relative
// to the lock file's directory when the file lies below it.
func (f *File) Pin(name string, kind Kind, source, path string) (Entry, error) {
	if !kind.valid() {
		return Entry{}, fmt.Errorf("pin %s: kind %q, want "+kindList, path, kind)
	}
	sha, size, err := HashFile(path)
	if err != nil {
		return Entry{}, err
	}
	stored := path
	abs, err := filepath.Abs(path)
	lockDir, err2 := filepath.Abs(f.Dir())
	if err == nil && err2 == nil {
		if rel, err := filepath.Rel(lockDir, abs); err == nil && !strings.HasPrefix(rel, "..") {
			stored = filepath.ToSlash(rel)
		} else {
			stored = abs
		}
	}
	if name == "" {
		name = stored
	}
	e := Entry{Name: name, Kind: kind, Source: source, Path: stored, Size: size, SHA256: sha}
	f.Upsert(e)
	return e, nil
}

// Save writes the lock file atomically, entries sorted by name, one block each,
// so diffs show exactly which pins changed.
func (f *File) Save() error {
	entries := append([]Entry(nil), f.Entries...)
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	var b strings.Builder
	b.WriteString("# models.lock: every artifact tagpr loads, pinned by size and sha256.\n")
	b.WriteString("# Paths are relative to this file. Update with `tagpr models lock PATH...`; check with `tagpr models verify`.\n")
	for _, e := range entries {
		b.WriteString("\n[[artifact]]\n")
		fmt.Fprintf(&b, "name = %s\n", strconv.Quote(e.Name))
		fmt.Fprintf(&b, "kind = %s\n", strconv.Quote(string(e.Kind)))
		if e.Source != "" {
			fmt.Fprintf(&b, "source = %s\n", strconv.Quote(e.Source))
		}
		fmt.Fprintf(&b, "path = %s\n", strconv.Quote(e.Path))
		fmt.Fprintf(&b, "size = %d\n", e.Size)
		fmt.Fprintf(&b, "sha256 = %s\n", strconv.Quote(e.SHA256))
	}
	if err := renameio.WriteFile(f.Path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", f.Path, err)
	}
	return nil
}

// VerifyIfPinned checks a file against every models.lock that pins it: the
// one found from the working directory and the one found from the file's own
// directory. A file pinned nowhere passes; a pinned file whose content
// differs is refused with a MismatchError naming both hashes.
func VerifyIfPinned(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, from := range []string{".", filepath.Dir(abs)} {
		lf, err := Find(from)
		if err != nil || seen[lf] {
			continue
		}
		seen[lf] = true
		f, err := Load(lf)
		if err != nil {
			return err
		}
		if e, ok := f.ForPath(abs); ok {
			if err := f.Verify(e); err != nil {
				return fmt.Errorf("pinned artifact %s (%s in %s): %w", e.Name, e.Kind, lf, err)
			}
		}
	}
	return nil
}
