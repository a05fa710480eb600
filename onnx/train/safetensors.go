package train

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"

	"github.com/tagpr/tagpr/onnx/safetensors"
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
		return safetensors.LEBytes(t.F32)
	case t.F64 != nil:
		return safetensors.LEBytes(t.F64)
	default:
		return safetensors.LEBytes(t.I64)
	}
}

// WriteSafetensors writes tensors (and optional string metadata) to path in
// the safetensors format, atomically: a temp file renamed into place. A NaN
// or ±Inf in a float tensor is refused: a checkpoint never holds one.
func WriteSafetensors(path string, tensors map[string]STensor, meta map[string]string) error {
	names := make([]string, 0, len(tensors))
	for n := range tensors {
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
	out := make([]safetensors.Tensor, 0, len(names))
	for _, n := range names {
		t := tensors[n]
		dt, size, err := t.dtype()
		if err != nil {
			return fmt.Errorf("write %s: tensor %q: %w", path, n, err)
		}
		if want := safetensors.NumElements(t.Shape) * safetensors.ElemSize(dt); want != int64(size) {
			return fmt.Errorf("write %s: tensor %q has %d bytes of data for shape %v", path, n, size, t.Shape)
		}
		out = append(out, safetensors.Tensor{Name: n, DType: dt, Shape: t.Shape, Data: t.bytes()})
	}
	return safetensors.Write(path, out, meta)
}

// ReadSafetensors reads a safetensors file. F32, F64 and I64 tensors load as
// such; F16 and BF16 are widened to F32; I32 to I64. Any other dtype is an
// error naming the tensor.
func ReadSafetensors(path string) (map[string]STensor, map[string]string, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	out := make(map[string]STensor)
	for _, name := range f.Names() {
		e, _ := f.Entry(name)
		b, err := f.Bytes(name)
		if err != nil {
			return nil, nil, err
		}
		n := int(e.Elements())
		t := STensor{Shape: e.Shape}
		switch e.DType {
		case "F32", "F16", "BF16":
			t.F32 = make([]float32, n)
			if err := safetensors.ToFloat32(e.DType, b, t.F32); err != nil {
				return nil, nil, fmt.Errorf("read safetensors %s: tensor %q: %w", path, name, err)
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
		default:
			return nil, nil, fmt.Errorf("read safetensors %s: tensor %q: dtype %s is not supported (F32, F64, I64, I32, F16, BF16)", path, name, e.DType)
		}
		out[name] = t
	}
	return out, f.Meta, nil
}
