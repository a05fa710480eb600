package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"sort"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
)

// Entry is one tensor of a header.
type Entry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Size is the entry's byte length.
func (e Entry) Size() int64 { return e.DataOffsets[1] - e.DataOffsets[0] }

// Elements is the number of values.
func (e Entry) Elements() int64 { return NumElements(e.Shape) }

// NumElements multiplies a shape's dims (1 for a scalar).
func NumElements(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// ElemSize is a dtype's byte width; 0 for a dtype this package does not know.
func ElemSize(dtype string) int64 {
	switch dtype {
	case "F64", "I64", "U64":
		return 8
	case "F32", "I32", "U32":
		return 4
	case "F16", "BF16", "I16", "U16":
		return 2
	case "I8", "U8", "BOOL", "F8_E4M3", "F8_E5M2":
		return 1
	}
	return 0
}

// MaxHeader bounds the JSON header so a corrupt length cannot exhaust memory.
const MaxHeader = 100 << 20

// ParseHeader checks a header (the JSON after the length prefix) against
// dataLen bytes of data: every dtype known, every shape non-negative and
// fitting the data, and the byte ranges tiling the data with no overlap or
// hole. Errors name the tensor; the caller adds the file.
func ParseHeader(hj []byte, dataLen int64) (map[string]Entry, map[string]string, error) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hj, &raw); err != nil {
		return nil, nil, fmt.Errorf("header is not a JSON object: %v", err)
	}
	var meta map[string]string
	entries := make(map[string]Entry, len(raw))
	type span struct{ b, e int64 }
	spans := make([]span, 0, len(raw))
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return nil, nil, fmt.Errorf("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e Entry
		if err := json.Unmarshal(msg, &e); err != nil {
			return nil, nil, fmt.Errorf("tensor %q: bad entry: %v", name, err)
		}
		es := ElemSize(e.DType)
		if es == 0 {
			return nil, nil, fmt.Errorf("tensor %q: unknown dtype %q", name, e.DType)
		}
		n, empty := int64(1), false
		for _, d := range e.Shape {
			empty = empty || d == 0
		}
		for _, d := range e.Shape {
			if d < 0 {
				return nil, nil, fmt.Errorf("tensor %q: negative dim in shape %v", name, e.Shape)
			}
			if !empty && n > dataLen/d {
				return nil, nil, fmt.Errorf("tensor %q: shape %v holds more values than the file", name, e.Shape)
			}
			n *= d
		}
		b, en := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || en < b || en > dataLen {
			return nil, nil, fmt.Errorf("tensor %q: data offsets %v outside the %d data bytes", name, e.DataOffsets, dataLen)
		}
		if en-b != n*es {
			return nil, nil, fmt.Errorf("tensor %q: %d bytes for shape %v of %s", name, en-b, e.Shape, e.DType)
		}
		entries[name] = e
		spans = append(spans, span{b, en})
	}
	sort.Slice(spans, func(i, j int) bool {
		if spans[i].b != spans[j].b {
			return spans[i].b < spans[j].b
		}
		return spans[i].e < spans[j].e // empty tensors before the one starting there
	})
	var at int64
	for _, s := range spans {
		if s.b != at {
			return nil, nil, fmt.Errorf("tensor data overlaps or leaves a hole at byte %d", at)
		}
		at = s.e
	}
	if at != dataLen {
		return nil, nil, fmt.Errorf("tensors cover %d of %d data bytes", at, dataLen)
	}
	return entries, meta, nil
}

// Tensor is one tensor to write: its bytes come from Data, or from Fill
// (which must write exactly Elements(Shape)·ElemSize(DType) bytes) for
// tensors produced on the fly.
type Tensor struct {
	Name  string
	DType string
	Shape []int64
	Data  []byte
	Fill  func(w io.Writer) error
}

// Write writes tensors (in the given order) and optional string metadata to
// path, streaming each one, and renames the file into place only when it is
// complete.
func Write(path string, tensors []Tensor, meta map[string]string) error {
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, t := range tensors {
		if t.Name == "__metadata__" {
			return fmt.Errorf("write %s: tensor name __metadata__ is reserved", path)
		}
		if _, dup := header[t.Name]; dup {
			return fmt.Errorf("write %s: tensor %q given twice", path, t.Name)
		}
		es := ElemSize(t.DType)
		if es == 0 {
			return fmt.Errorf("write %s: tensor %q: unknown dtype %q", path, t.Name, t.DType)
		}
		size := NumElements(t.Shape) * es
		if t.Fill == nil && int64(len(t.Data)) != size {
			return fmt.Errorf("write %s: tensor %q has %d bytes of data for shape %v of %s", path, t.Name, len(t.Data), t.Shape, t.DType)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[t.Name] = Entry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + size}}
		off += size
	}
	hj, err := json.Marshal(header)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	// Pad the header with spaces so the data starts 8-byte aligned, as the
	// reference writer does.
	for (8+len(hj))%8 != 0 {
		hj = append(hj, ' ')
	}
	pf, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer pf.Cleanup()
	w := bufio.NewWriterSize(pf, 1<<20)
	var lenBuf [8]byte
	binary.LittleEndian.PutUint64(lenBuf[:], uint64(len(hj)))
	w.Write(lenBuf[:])
	w.Write(hj)
	for _, t := range tensors {
		want := NumElements(t.Shape) * ElemSize(t.DType)
		cw := &ir.CountWriter{W: w}
		if t.Fill != nil {
			err = t.Fill(cw)
		} else {
			_, err = cw.Write(t.Data)
		}
		if err != nil {
			return fmt.Errorf("write %s: tensor %q: %w", path, t.Name, err)
		}
		if cw.N != want {
			return fmt.Errorf("write %s: tensor %q: wrote %d bytes, shape %v of %s needs %d", path, t.Name, cw.N, t.Shape, t.DType, want)
		}
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := pf.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// ToFloat32 widens little-endian F32, F16 or BF16 bytes into dst (len(dst)
// values); any other dtype is an error.
func ToFloat32(dtype string, src []byte, dst []float32) error {
	need := int64(len(dst)) * ElemSize(dtype)
	if ElemSize(dtype) == 0 || int64(len(src)) != need {
		return fmt.Errorf("convert %s: %d bytes for %d values", dtype, len(src), len(dst))
	}
	switch dtype {
	case "F32":
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case "F16":
		for i := range dst {
			dst[i] = ir.HalfToFloat32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case "BF16":
		for i := range dst {
			dst[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(src[2*i:])) << 16)
		}
	default:
		return fmt.Errorf("dtype %s is not a float type tagpr reads (F32, F16, BF16)", dtype)
	}
	return nil
}
