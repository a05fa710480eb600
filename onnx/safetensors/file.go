package safetensors

import (
	"encoding/binary"
	"fmt"
	"os"
	"sort"
)

// File is a safetensors file opened for reading: the header parsed and
// checked, the data mapped read-only (or read, where mapping is not
// available). It is safe for concurrent reads.
type File struct {
	Path    string
	Meta    map[string]string
	entries map[string]Entry
	data    []byte // the whole file
	start   int64  // where tensor data begins
	unmap   func() error
}

// Open maps path and checks its header (see ParseHeader); errors name the
// file and the tensor.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read safetensors %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read safetensors %s: %w", path, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("read safetensors %s: not a regular file", path)
	}
	if st.Size() < 8 {
		return nil, fmt.Errorf("read safetensors %s: file too short for the 8-byte header length (%d bytes)", path, st.Size())
	}
	data, unmap, err := mapFile(f, st.Size())
	if err != nil {
		return nil, fmt.Errorf("read safetensors %s: %w", path, err)
	}
	fail := func(format string, a ...any) (*File, error) {
		unmap()
		return nil, fmt.Errorf("read safetensors %s: "+format, append([]any{path}, a...)...)
	}
	hl := binary.LittleEndian.Uint64(data[:8])
	if hl > MaxHeader || int64(hl) > st.Size()-8 {
		return fail("header length %d does not fit the file (%d bytes)", hl, st.Size())
	}
	start := 8 + int64(hl)
	entries, meta, err := ParseHeader(data[8:start], st.Size()-start)
	if err != nil {
		return fail("%v", err)
	}
	return &File{Path: path, Meta: meta, entries: entries, data: data, start: start, unmap: unmap}, nil
}

// Close unmaps the file; byte slices handed out before become invalid.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}

// Names lists the tensors in data order.
func (f *File) Names() []string {
	out := make([]string, 0, len(f.entries))
	for n := range f.entries {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := f.entries[out[i]], f.entries[out[j]]
		if a.DataOffsets[0] != b.DataOffsets[0] {
			return a.DataOffsets[0] < b.DataOffsets[0]
		}
		return out[i] < out[j]
	})
	return out
}

// Entry describes a tensor.
func (f *File) Entry(name string) (Entry, bool) {
	e, ok := f.entries[name]
	return e, ok
}

// Bytes is a tensor's data as stored (little-endian), without a copy.
func (f *File) Bytes(name string) ([]byte, error) {
	e, ok := f.entries[name]
	if !ok {
		return nil, fmt.Errorf("read safetensors %s: no tensor %q", f.Path, name)
	}
	return f.data[f.start+e.DataOffsets[0] : f.start+e.DataOffsets[1]], nil
}

// Float32s converts a float tensor (F32, F16 or BF16) into a new slice.
func (f *File) Float32s(name string) ([]float32, error) {
	b, err := f.Bytes(name)
	if err != nil {
		return nil, err
	}
	e := f.entries[name]
	out := make([]float32, e.Elements())
	if err := ToFloat32(e.DType, b, out); err != nil {
		return nil, fmt.Errorf("read safetensors %s: tensor %q: %w", f.Path, name, err)
	}
	return out, nil
}

// Release tells the system a tensor's pages are no longer needed, so a
// long conversion does not keep the whole mapped file resident. Reading
// the tensor again is still valid (the pages come back from the file).
func (f *File) Release(name string) {
	if e, ok := f.entries[name]; ok {
		f.ReleaseRange(name, 0, e.Size())
	}
}

// ReleaseRange is Release for bytes [from, to) of a tensor's data.
func (f *File) ReleaseRange(name string, from, to int64) {
	if e, ok := f.entries[name]; ok {
		from, to = max(from, 0), min(to, e.Size())
		release(f.data, f.start+e.DataOffsets[0]+from, f.start+e.DataOffsets[0]+to)
	}
}
