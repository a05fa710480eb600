package ir

import (
	"io"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// MarshalToParts is MarshalTo splitting every message of at least part
// bytes (tests use a small part to split everything).
func MarshalToParts(w io.Writer, m *onnxpb.ModelProto, part int) error {
	return writeMessage(w, m.ProtoReflect(), part)
}
