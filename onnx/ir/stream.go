package ir

import (
	"io"
	"slices"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// streamPart is the size under which a message is marshalled whole; larger
// ones are written a field at a time, so no buffer holds a model's weights.
// It is small because what is marshalled is garbage at once, and the
// collector lets garbage grow to the size of the live heap (the model)
// before it runs.
const streamPart = 64 << 10

// MarshalTo writes Marshal(m)'s bytes to w without holding them in memory:
// a weight's raw data goes from the tensor to w, the rest a part of a
// message at a time. A deterministic marshal emits a message's fields in
// field-number order (unknown fields last), so marshalling consecutive runs
// of fields and writing the large ones between them gives the same bytes.
// It has no size limit (hashes take any model); Write refuses a file past
// protobuf's 2 GiB, which no reader could parse.
func MarshalTo(w io.Writer, m *onnxpb.ModelProto) (int64, error) {
	cw := &CountWriter{W: w}
	err := writeMessage(cw, m.ProtoReflect(), streamPart)
	return cw.N, err
}

// CountWriter passes writes to W and counts the bytes written in N.
type CountWriter struct {
	W io.Writer
	N int64
}

func (c *CountWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}

// writeMessage writes msg as a deterministic Marshal would, splitting
// messages of at least part bytes.
func writeMessage(w io.Writer, msg protoreflect.Message, part int) error {
	opts := proto.MarshalOptions{Deterministic: true}
	if opts.Size(msg.Interface()) < part {
		b, err := opts.Marshal(msg.Interface())
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	var fields []protoreflect.FieldDescriptor
	msg.Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		fields = append(fields, fd)
		return true
	})
	slices.SortFunc(fields, func(a, b protoreflect.FieldDescriptor) int { return int(a.Number()) - int(b.Number()) })
	run := msg.New() // consecutive small fields, marshalled together
	flush := func() error {
		b, err := opts.Marshal(run.Interface())
		if err != nil {
			return err
		}
		run = msg.New()
		_, err = w.Write(b)
		return err
	}
	for _, fd := range fields {
		v := msg.Get(fd)
		large := false
		switch {
		case fd.IsMap():
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			large = listSize(opts, v.List()) >= part
		case fd.Kind() == protoreflect.MessageKind:
			large = opts.Size(v.Message().Interface()) >= part
		case fd.Kind() == protoreflect.BytesKind && !fd.IsList():
			large = len(v.Bytes()) >= part
		}
		if !large {
			run.Set(fd, v)
			continue
		}
		if err := flush(); err != nil {
			return err
		}
		switch {
		case fd.IsList():
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				if err := writeField(w, fd.Number(), l.Get(i).Message(), part); err != nil {
					return err
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if err := writeField(w, fd.Number(), v.Message(), part); err != nil {
				return err
			}
		default:
			b := protowire.AppendVarint(protowire.AppendTag(nil, fd.Number(), protowire.BytesType), uint64(len(v.Bytes())))
			if _, err := w.Write(b); err != nil {
				return err
			}
			if _, err := w.Write(v.Bytes()); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	_, err := w.Write(msg.GetUnknown())
	return err
}

// writeField writes one length-delimited message field.
func writeField(w io.Writer, num protoreflect.FieldNumber, m protoreflect.Message, part int) error {
	size := proto.MarshalOptions{Deterministic: true}.Size(m.Interface())
	b := protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.BytesType), uint64(size))
	if _, err := w.Write(b); err != nil {
		return err
	}
	return writeMessage(w, m, part)
}

func listSize(opts proto.MarshalOptions, l protoreflect.List) int {
	n := 0
	for i := 0; i < l.Len(); i++ {
		n += opts.Size(l.Get(i).Message().Interface())
	}
	return n
}
