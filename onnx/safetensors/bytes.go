package safetensors

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// hostLittleEndian: safetensors data is little-endian; on such hosts slices
// are written and read as they lie in memory.
var hostLittleEndian = func() bool { x := uint16(1); return *(*byte)(unsafe.Pointer(&x)) == 1 }()

// LEBytes is s as little-endian bytes: s's own memory on little-endian
// hosts (no copy), a converted copy elsewhere.
func LEBytes[T float32 | float64 | int64](s []T) []byte {
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
