package ir

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// DataType is an ONNX tensor element type.
type DataType = onnxpb.TensorProto_DataType

// The element types tagpr builds graphs with.
const (
	Undefined = onnxpb.TensorProto_UNDEFINED
	Float     = onnxpb.TensorProto_FLOAT
	Double    = onnxpb.TensorProto_DOUBLE
	Float16   = onnxpb.TensorProto_FLOAT16
	BFloat16  = onnxpb.TensorProto_BFLOAT16
	Int64     = onnxpb.TensorProto_INT64
	Int32     = onnxpb.TensorProto_INT32
	Int8      = onnxpb.TensorProto_INT8
	Uint8     = onnxpb.TensorProto_UINT8
	Bool      = onnxpb.TensorProto_BOOL
	String    = onnxpb.TensorProto_STRING
)

// Element is a Go type that maps to one ONNX element type.
type Element interface {
	float32 | float64 | int64 | int32 | int8 | uint8 | bool
}

// TypeOf returns the ONNX element type of T.
func TypeOf[T Element]() DataType {
	var z T
	switch any(z).(type) {
	case float32:
		return Float
	case float64:
		return Double
	case int64:
		return Int64
	case int32:
		return Int32
	case int8:
		return Int8
	case uint8:
		return Uint8
	case bool:
		return Bool
	}
	return Undefined
}

// ElemSize is the byte size of one element in raw_data, or 0 for types
// without a fixed byte size (string, 4-bit and 2-bit types).
func ElemSize(dt DataType) int {
	switch dt {
	case Double, Int64, onnxpb.TensorProto_UINT64, onnxpb.TensorProto_COMPLEX64:
		return 8
	case onnxpb.TensorProto_COMPLEX128:
		return 16
	case Float, Int32, onnxpb.TensorProto_UINT32:
		return 4
	case Float16, BFloat16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		return 2
	case Int8, Uint8, Bool, onnxpb.TensorProto_FLOAT8E4M3FN, onnxpb.TensorProto_FLOAT8E4M3FNUZ,
		onnxpb.TensorProto_FLOAT8E5M2, onnxpb.TensorProto_FLOAT8E5M2FNUZ, onnxpb.TensorProto_FLOAT8E8M0:
		return 1
	}
	return 0
}

// Tensor makes a TensorProto holding data (copied, little-endian raw_data)
// with the given dims; nil or empty dims make a scalar (rank 0). A data length
// that does not match the dims is reported by Validate and by the readers.
func Tensor[T Element](name string, dims []int64, data []T) *onnxpb.TensorProto {
	dt := TypeOf[T]()
	raw := make([]byte, len(data)*ElemSize(dt))
	switch d := any(data).(type) {
	case []float32:
		for i, v := range d {
			binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
		}
	case []float64:
		for i, v := range d {
			binary.LittleEndian.PutUint64(raw[8*i:], math.Float64bits(v))
		}
	case []int64:
		for i, v := range d {
			binary.LittleEndian.PutUint64(raw[8*i:], uint64(v))
		}
	case []int32:
		for i, v := range d {
			binary.LittleEndian.PutUint32(raw[4*i:], uint32(v))
		}
	case []int8:
		for i, v := range d {
			raw[i] = byte(v)
		}
	case []uint8:
		copy(raw, d)
	case []bool:
		for i, v := range d {
			if v {
				raw[i] = 1
			}
		}
	}
	return &onnxpb.TensorProto{Name: name, DataType: dt, Dims: append([]int64(nil), dims...), RawData: raw}
}

// Scalar makes a rank-0 tensor.
func Scalar[T Element](name string, v T) *onnxpb.TensorProto {
	return Tensor(name, nil, []T{v})
}

// Vector makes a rank-1 tensor of len(data) elements.
func Vector[T Element](name string, data ...T) *onnxpb.TensorProto {
	return Tensor(name, []int64{int64(len(data))}, data)
}

// NumElements is the product of dims (1 for a scalar), or -1 when a dim is negative.
func NumElements(dims []int64) int64 {
	n := int64(1)
	for _, d := range dims {
		if d < 0 {
			return -1
		}
		n *= d
	}
	return n
}

// tensorLabel names a tensor in errors.
func tensorLabel(t *onnxpb.TensorProto) string {
	if t.GetName() == "" {
		return "unnamed tensor"
	}
	return fmt.Sprintf("tensor %q", t.GetName())
}

// checkData reports whether t's stored data matches its dims and type. Data
// held in an external file that was not loaded is an error naming the tensor.
func checkData(t *onnxpb.TensorProto) error {
	if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL {
		return fmt.Errorf("%s: data is in external file %q, not loaded (use ir.Load or ir.LoadExternalData)", tensorLabel(t), externalKey(t, "location"))
	}
	if t.GetDataType() == Undefined {
		return fmt.Errorf("%s: data_type is UNDEFINED", tensorLabel(t))
	}
	n := NumElements(t.GetDims())
	if n < 0 {
		return fmt.Errorf("%s: negative dim in %v", tensorLabel(t), t.GetDims())
	}
	if t.GetSegment() != nil {
		return nil // a chunk of a bigger tensor: its size is not dims'
	}
	if raw := t.GetRawData(); raw != nil {
		sz := ElemSize(t.GetDataType())
		if sz == 0 {
			return nil
		}
		if int64(len(raw)) != n*int64(sz) {
			return fmt.Errorf("%s: raw_data has %d bytes, dims %v of %s need %d", tensorLabel(t), len(raw), t.GetDims(), t.GetDataType(), n*int64(sz))
		}
		return nil
	}
	got := int64(-1)
	switch t.GetDataType() {
	case Float:
		got = int64(len(t.GetFloatData()))
	case Double:
		got = int64(len(t.GetDoubleData()))
	case Int64:
		got = int64(len(t.GetInt64Data()))
	case Int32, Int8, Uint8, Bool, Float16, BFloat16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		got = int64(len(t.GetInt32Data()))
	case onnxpb.TensorProto_UINT32, onnxpb.TensorProto_UINT64:
		got = int64(len(t.GetUint64Data()))
	case String:
		got = int64(len(t.GetStringData()))
	case onnxpb.TensorProto_COMPLEX64:
		got = int64(len(t.GetFloatData())) / 2
	case onnxpb.TensorProto_COMPLEX128:
		got = int64(len(t.GetDoubleData())) / 2
	}
	if got >= 0 && got != n {
		return fmt.Errorf("%s: holds %d %s values, dims %v need %d", tensorLabel(t), got, t.GetDataType(), t.GetDims(), n)
	}
	return nil
}

// Float32View returns a FLOAT tensor's values as a view of its raw bytes
// when they are aligned and this machine is little-endian (no copy: a model's
// weights are then held once), else as Float32s' copy. Writing through a
// view changes the tensor.
func Float32View(t *onnxpb.TensorProto) ([]float32, error) {
	raw := t.GetRawData()
	if t.GetDataType() == Float && len(raw) >= 4 && int64(len(raw)) == 4*NumElements(t.GetDims()) &&
		uintptr(unsafe.Pointer(&raw[0]))%4 == 0 && binary.NativeEndian.Uint16([]byte{1, 0}) == 1 {
		return unsafe.Slice((*float32)(unsafe.Pointer(&raw[0])), len(raw)/4), nil
	}
	return Float32s(t)
}

// Float32s returns a FLOAT, FLOAT16 or BFLOAT16 tensor's values as float32,
// from raw_data or the typed field.
func Float32s(t *onnxpb.TensorProto) ([]float32, error) {
	if err := checkData(t); err != nil {
		return nil, err
	}
	raw := t.GetRawData()
	switch t.GetDataType() {
	case Float:
		if raw == nil {
			return append([]float32{}, t.GetFloatData()...), nil
		}
		out := make([]float32, len(raw)/4)
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	case Float16, BFloat16:
		conv := HalfToFloat32
		if t.GetDataType() == BFloat16 {
			conv = BFloat16ToFloat32
		}
		if raw == nil {
			in := t.GetInt32Data()
			out := make([]float32, len(in))
			for i, v := range in {
				out[i] = conv(uint16(v))
			}
			return out, nil
		}
		out := make([]float32, len(raw)/2)
		for i := range out {
			out[i] = conv(binary.LittleEndian.Uint16(raw[2*i:]))
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: element type %s, want FLOAT, FLOAT16 or BFLOAT16", tensorLabel(t), t.GetDataType())
}

// Float64s returns a DOUBLE tensor's values.
func Float64s(t *onnxpb.TensorProto) ([]float64, error) {
	if err := checkData(t); err != nil {
		return nil, err
	}
	if t.GetDataType() != Double {
		return nil, fmt.Errorf("%s: element type %s, want DOUBLE", tensorLabel(t), t.GetDataType())
	}
	raw := t.GetRawData()
	if raw == nil {
		return append([]float64{}, t.GetDoubleData()...), nil
	}
	out := make([]float64, len(raw)/8)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}

// Int64s returns an integer tensor's values (INT64, INT32, INT16, INT8,
// UINT8, UINT16, UINT32) widened to int64.
func Int64s(t *onnxpb.TensorProto) ([]int64, error) {
	if err := checkData(t); err != nil {
		return nil, err
	}
	raw := t.GetRawData()
	dt := t.GetDataType()
	switch dt {
	case Int64:
		if raw == nil {
			return append([]int64{}, t.GetInt64Data()...), nil
		}
		out := make([]int64, len(raw)/8)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		return out, nil
	case onnxpb.TensorProto_UINT32:
		if raw == nil {
			in := t.GetUint64Data()
			out := make([]int64, len(in))
			for i, v := range in {
				out[i] = int64(v)
			}
			return out, nil
		}
		out := make([]int64, len(raw)/4)
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return out, nil
	case Int32, onnxpb.TensorProto_INT16, Int8, Uint8, onnxpb.TensorProto_UINT16:
		if raw == nil {
			in := t.GetInt32Data()
			out := make([]int64, len(in))
			for i, v := range in {
				out[i] = int64(v)
			}
			return out, nil
		}
		sz := ElemSize(dt)
		out := make([]int64, len(raw)/sz)
		for i := range out {
			switch dt {
			case Int32:
				out[i] = int64(int32(binary.LittleEndian.Uint32(raw[4*i:])))
			case onnxpb.TensorProto_INT16:
				out[i] = int64(int16(binary.LittleEndian.Uint16(raw[2*i:])))
			case onnxpb.TensorProto_UINT16:
				out[i] = int64(binary.LittleEndian.Uint16(raw[2*i:]))
			case Int8:
				out[i] = int64(int8(raw[i]))
			case Uint8:
				out[i] = int64(raw[i])
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: element type %s, want an integer type", tensorLabel(t), dt)
}

// Int32s returns an INT32 tensor's values.
func Int32s(t *onnxpb.TensorProto) ([]int32, error) {
	if t.GetDataType() != Int32 {
		return nil, fmt.Errorf("%s: element type %s, want INT32", tensorLabel(t), t.GetDataType())
	}
	v, err := Int64s(t)
	if err != nil {
		return nil, err
	}
	out := make([]int32, len(v))
	for i, x := range v {
		out[i] = int32(x)
	}
	return out, nil
}

// Bools returns a BOOL tensor's values.
func Bools(t *onnxpb.TensorProto) ([]bool, error) {
	if err := checkData(t); err != nil {
		return nil, err
	}
	if t.GetDataType() != Bool {
		return nil, fmt.Errorf("%s: element type %s, want BOOL", tensorLabel(t), t.GetDataType())
	}
	if raw := t.GetRawData(); raw != nil {
		out := make([]bool, len(raw))
		for i, b := range raw {
			out[i] = b != 0
		}
		return out, nil
	}
	in := t.GetInt32Data()
	out := make([]bool, len(in))
	for i, v := range in {
		out[i] = v != 0
	}
	return out, nil
}

// RawBytes returns t's data as little-endian packed bytes (raw_data's
// layout), converting from the typed field if needed; the result may alias
// t.RawData.
func RawBytes(t *onnxpb.TensorProto) ([]byte, error) {
	if err := checkData(t); err != nil {
		return nil, err
	}
	if t.GetRawData() != nil {
		return t.GetRawData(), nil
	}
	dt := t.GetDataType()
	switch dt {
	case Float:
		return Tensor("", nil, t.GetFloatData()).RawData, nil
	case Double:
		return Tensor("", nil, t.GetDoubleData()).RawData, nil
	case Int64:
		return Tensor("", nil, t.GetInt64Data()).RawData, nil
	case Int32:
		return Tensor("", nil, t.GetInt32Data()).RawData, nil
	case Int8, Uint8, Bool:
		in := t.GetInt32Data()
		out := make([]byte, len(in))
		for i, v := range in {
			out[i] = byte(v)
		}
		return out, nil
	case Float16, BFloat16, onnxpb.TensorProto_INT16, onnxpb.TensorProto_UINT16:
		in := t.GetInt32Data()
		out := make([]byte, 2*len(in))
		for i, v := range in {
			binary.LittleEndian.PutUint16(out[2*i:], uint16(v))
		}
		return out, nil
	case onnxpb.TensorProto_UINT32:
		in := t.GetUint64Data()
		out := make([]byte, 4*len(in))
		for i, v := range in {
			binary.LittleEndian.PutUint32(out[4*i:], uint32(v))
		}
		return out, nil
	case onnxpb.TensorProto_UINT64:
		in := t.GetUint64Data()
		out := make([]byte, 8*len(in))
		for i, v := range in {
			binary.LittleEndian.PutUint64(out[8*i:], v)
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s: cannot pack element type %s as raw bytes", tensorLabel(t), dt)
}

// toRaw moves t's typed data into raw_data in place.
func toRaw(t *onnxpb.TensorProto) error {
	if t.GetRawData() != nil {
		return nil
	}
	raw, err := RawBytes(t)
	if err != nil {
		return err
	}
	t.RawData = raw
	t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data = nil, nil, nil, nil, nil
	return nil
}

// HalfToFloat32 converts an IEEE 754 half-precision bit pattern to float32.
func HalfToFloat32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalize
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		frac &= 0x3ff
		return math.Float32frombits(sign | e<<23 | frac<<13)
	case exp == 0x1f: // inf or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// Float32ToHalf converts float32 to the nearest half-precision bit pattern
// (round half to even; overflow to infinity).
func Float32ToHalf(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	frac := b & 0x7fffff
	if exp == 0xff {
		if frac != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	}
	e := exp - 127 + 15
	if e >= 0x1f {
		return sign | 0x7c00
	}
	if e <= 0 {
		if e < -10 {
			return sign
		}
		m := frac | 0x800000
		shift := uint32(14 - e)
		half := m >> shift
		rem := m & (1<<shift - 1)
		mid := uint32(1) << (shift - 1)
		if rem > mid || (rem == mid && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(e)<<10 | frac>>13
	rem := frac & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is the right rounding
	}
	return sign | uint16(half)
}

// BFloat16ToFloat32 converts a bfloat16 bit pattern to float32.
func BFloat16ToFloat32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}
