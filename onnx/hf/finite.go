package hf

import (
	"encoding/binary"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/onnx/train"
)

// floatBits describes a little-endian float type's bit layout.
type floatBits struct {
	size            int
	exp, mant, sign uint64
}

var floatLayouts = map[string]floatBits{
	"F64":  {size: 8, exp: 0x7ff0000000000000, mant: 0x000fffffffffffff, sign: 1 << 63},
	"F32":  {size: 4, exp: 0x7f800000, mant: 0x007fffff, sign: 1 << 31},
	"F16":  {size: 2, exp: 0x7c00, mant: 0x03ff, sign: 1 << 15},
	"BF16": {size: 2, exp: 0x7f80, mant: 0x007f, sign: 1 << 15},
}

// firstNonFinite returns the index of the first NaN or ±Inf among raw's
// little-endian elements of the safetensors float type dtype and what it
// is ("NaN", "+Inf", "-Inf"), or -1 when every element is finite (or
// dtype is not a float type).
func firstNonFinite(dtype string, raw []byte) (int64, string) {
	l, ok := floatLayouts[dtype]
	if !ok {
		return -1, ""
	}
	n := len(raw) / l.size
	at := -1
	var bits uint64
	switch l.size {
	case 8:
		for i := 0; i < n; i++ {
			if v := binary.LittleEndian.Uint64(raw[8*i:]); v&l.exp == l.exp {
				at, bits = i, v
				break
			}
		}
	case 4:
		exp := uint32(l.exp)
		for i := 0; i < n; i++ {
			if v := binary.LittleEndian.Uint32(raw[4*i:]); v&exp == exp {
				at, bits = i, uint64(v)
				break
			}
		}
	case 2:
		exp := uint16(l.exp)
		for i := 0; i < n; i++ {
			if v := binary.LittleEndian.Uint16(raw[2*i:]); v&exp == exp {
				at, bits = i, uint64(v)
				break
			}
		}
	}
	if at < 0 {
		return -1, ""
	}
	return int64(at), nonFiniteKind(bits&l.mant != 0, bits&l.sign != 0)
}

// firstNonFinite32 is firstNonFinite for float32 values (train's scan).
func firstNonFinite32(v []float32) (int64, string) {
	i := train.NonFiniteValue(v)
	if i < 0 {
		return -1, ""
	}
	x := float64(v[i])
	return int64(i), nonFiniteKind(math.IsNaN(x), x < 0)
}

func nonFiniteKind(nan, negative bool) string {
	switch {
	case nan:
		return "NaN"
	case negative:
		return "-Inf"
	}
	return "+Inf"
}

// elementAt formats flat index i of a row-major tensor of the given shape
// as [i0, i1, …].
func elementAt(shape []int64, i int64) string {
	idx := make([]string, len(shape))
	for d := len(shape) - 1; d >= 0; d-- {
		if shape[d] <= 0 {
			return "[" + strconv.FormatInt(i, 10) + "]"
		}
		idx[d] = strconv.FormatInt(i%shape[d], 10)
		i /= shape[d]
	}
	if len(shape) == 0 {
		return "[]"
	}
	return "[" + strings.Join(idx, ", ") + "]"
}

// nonFinite says which element of a weight is not finite.
func nonFinite(name string, shape []int64, i int64, kind string) string {
	return fmt.Sprintf("%s holds %s at %s (element %d)", name, kind, elementAt(shape, i), i)
}

// damagedError is Import's refusal of a checkpoint tensor holding NaN or
// Inf; Import returns it as is, not wrapped in the builder's context.
type damagedError struct{ msg string }

func (e *damagedError) Error() string { return e.msg }
