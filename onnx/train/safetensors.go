package train

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"unsafe"

	"github.com/google/renameio/v2"
	"github.com/tagpr/tagpr/onnx/ir"
)

// STensor is one tensor of a safetensors file. Exactly one of F32, F64 or I64
// holds the data.
type STensor struct {
	Shape []int64
	F32   []float32
	F64   []float64
	I64   []int64
}

func (t STensor) dtype() (string, int, error) {
	n := 0
	var dt string
	size := 0
	if t.F32 != nil {
		n++
		dt, size = "F32", len(t.F32)*4
	}
	if t.F64 != nil {
		n++
		dt, size = "F64", len(t.F64)*8
	}
	if t.I64 != nil {
		n++
		dt, size = "I64", len(t.I64)*8
	}
	if n != 1 {
		return "", 0, fmt.Errorf("tensor must hold exactly one of F32, F64, I64 (holds %d)", n)
	}
	return dt, size, nil
}

func (t STensor) bytes() []byte {
	switch {
	case t.F32 != nil:
		return leBytes(t.F32)
	case t.F64 != nil:
		return leBytes(t.F64)
	default:
		return leBytes(t.I64)
	}
}

// hostLittleEndian: safetensors data is little-endian; on such hosts slices
// are written and read as they lie in memory.
var hostLittleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

func leBytes[T float32 | float64 | int64](s []T) []byte {
	if len(s) == 0 {
		return nil
	}
	if hostLittleEndian {
		return unsafe.Slice((*byte)(unsafe.Pointer(&s[0])), len(s)*int(unsafe.Sizeof(s[0])))
	}
	var zero T
	size := int(unsafe.Sizeof(zero))
	out := make([]byte, len(s)*size)
	for i, x := range s {
		switch v := any(x).(type) {
		case float32:
			binary.LittleEndian.PutUint32(out[i*4:], math.Float32bits(v))
		case float64:
			binary.LittleEndian.PutUint64(out[i*8:], math.Float64bits(v))
		case int64:
			binary.LittleEndian.PutUint64(out[i*8:], uint64(v))
		}
	}
	return out
}

type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int64  `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// WriteSafetensors writes tensors (and optional string metadata) to path in
// the safetensors format, atomically: a temp file renamed into place. A NaN
// or ±Inf in a float tensor is refused: a checkpoint never holds one.
func WriteSafetensors(path string, tensors map[string]STensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
		if n == "__metadata__" {
			return fmt.Errorf("write %s: tensor name __metadata__ is reserved", path)
		}
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t := tensors[n]
		i, v := NonFiniteValue(t.F32), 0.0
		if i >= 0 {
			v = float64(t.F32[i])
		} else if i = NonFiniteValue(t.F64); i >= 0 {
			v = t.F64[i]
		}
		if i >= 0 {
			return fmt.Errorf("write %s: tensor %q holds %v at index %d: refusing to save non-finite values", path, n, v, i)
		}
	}
	header := map[string]any{}
	if len(meta) > 0 {
		header["__metadata__"] = meta
	}
	var off int64
	for _, n := range names {
		t := tensors[n]
		dt, size, err := t.dtype()
		if err != nil {
			return fmt.Errorf("write %s: tensor %q: %w", path, n, err)
		}
		if want := numel(t.Shape) * elemSize(dt); want != int64(size) {
			return fmt.Errorf("write %s: tensor %q has %d bytes of data for shape %v", path, n, size, t.Shape)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int64{}
		}
		header[n] = stEntry{DType: dt, Shape: shape, DataOffsets: [2]int64{off, off + int64(size)}}
		off += int64(size)
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
	for _, n := range names {
		if _, err := w.Write(tensors[n].bytes()); err != nil {
			return fmt.Errorf("write %s: %w", path, err)
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

func elemSize(dt string) int64 {
	switch dt {
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

func numel(shape []int64) int64 {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	return n
}

// maxHeader bounds the JSON header so a corrupt length cannot exhaust memory.
const maxHeader = 100 << 20

// ReadSafetensors reads a safetensors file. F32, F64 and I64 tensors load as
// such; F16 and BF16 are widened to F32; I32 to I64. Any other dtype is an
// error naming the tensor.
func ReadSafetensors(path string) (map[string]STensor, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read safetensors %s: %w", path, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, fmt.Errorf("read safetensors %s: %w", path, err)
	}
	fail := func(format string, a ...any) (map[string]STensor, map[string]string, error) {
		return nil, nil, fmt.Errorf("read safetensors %s: "+format, append([]any{path}, a...)...)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(f, lenBuf[:]); err != nil {
		return fail("file too short for the 8-byte header length (%d bytes)", st.Size())
	}
	hl := binary.LittleEndian.Uint64(lenBuf[:])
	if hl > maxHeader || int64(hl) > st.Size()-8 {
		return fail("header length %d does not fit the file (%d bytes)", hl, st.Size())
	}
	hj := make([]byte, hl)
	if _, err := io.ReadFull(f, hj); err != nil {
		return fail("reading header: %v", err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(hj, &raw); err != nil {
		return fail("header is not a JSON object: %v", err)
	}
	dataLen := st.Size() - 8 - int64(hl)
	var meta map[string]string
	entries := map[string]stEntry{}
	type span struct{ b, e int64 }
	var spans []span
	for name, msg := range raw {
		if name == "__metadata__" {
			if err := json.Unmarshal(msg, &meta); err != nil {
				return fail("__metadata__ must map strings to strings: %v", err)
			}
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			return fail("tensor %q: bad entry: %v", name, err)
		}
		es := elemSize(e.DType)
		if es == 0 {
			return fail("tensor %q: unknown dtype %q", name, e.DType)
		}
		n, empty := int64(1), false
		for _, d := range e.Shape {
			empty = empty || d == 0
		}
		for _, d := range e.Shape {
			if d < 0 {
				return fail("tensor %q: negative dim in shape %v", name, e.Shape)
			}
			if !empty && n > dataLen/d {
				return fail("tensor %q: shape %v holds more values than the file", name, e.Shape)
			}
			n *= d
		}
		b, en := e.DataOffsets[0], e.DataOffsets[1]
		if b < 0 || en < b || en > dataLen {
			return fail("tensor %q: data offsets %v outside the %d data bytes", name, e.DataOffsets, dataLen)
		}
		if en-b != numel(e.Shape)*es {
			return fail("tensor %q: %d bytes for shape %v of %s", name, en-b, e.Shape, e.DType)
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
			return fail("tensor data overlaps or leaves a hole at byte %d", at)
		}
		at = s.e
	}
	if at != dataLen {
		return fail("tensors cover %d of %d data bytes", at, dataLen)
	}
	data := make([]byte, dataLen)
	if _, err := io.ReadFull(f, data); err != nil {
		return fail("reading data: %v", err)
	}
	out := make(map[string]STensor, len(entries))
	for name, e := range entries {
		b := data[e.DataOffsets[0]:e.DataOffsets[1]]
		n := int(numel(e.Shape))
		t := STensor{Shape: e.Shape}
		switch e.DType {
		case "F32":
			t.F32 = make([]float32, n)
			for i := range n {
				t.F32[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:]))
			}
		case "F64":
			t.F64 = make([]float64, n)
			for i := range n {
				t.F64[i] = math.Float64frombits(binary.LittleEndian.Uint64(b[i*8:]))
			}
		case "I64":
			t.I64 = make([]int64, n)
			for i := range n {
				t.I64[i] = int64(binary.LittleEndian.Uint64(b[i*8:]))
			}
		case "I32":
			t.I64 = make([]int64, n)
			for i := range n {
				t.I64[i] = int64(int32(binary.LittleEndian.Uint32(b[i*4:])))
			}
		case "F16":
			t.F32 = make([]float32, n)
			for i := range n {
				t.F32[i] = ir.HalfToFloat32(binary.LittleEndian.Uint16(b[i*2:]))
			}
		case "BF16":
			t.F32 = make([]float32, n)
			for i := range n {
				t.F32[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(b[i*2:])) << 16)
			}
		default:
			return fail("tensor %q: dtype %s is not supported (F32, F64, I64, I32, F16, BF16)", name, e.DType)
		}
		out[name] = t
	}
	return out, meta, nil
}
