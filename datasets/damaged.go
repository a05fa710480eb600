package datasets

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"
	flatbuffers "github.com/google/flatbuffers/go"
)

// damagedFix is the fix named with every damaged-file error.
const damagedFix = "the file is damaged: write or download it again"

// decodeSafely runs f, which reads a file's bytes through the Arrow or
// Parquet decoders. Those trust the bytes they are given and panic on some
// damage (a footer offset past the end, a buffer shorter than its array); a
// damaged file must be refused with an error, never crash the process.
func decodeSafely(f func() error) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("%s (the decoder failed: %v)", damagedFix, p)
		}
	}()
	return f()
}

// validateBatch checks what the row decoders index without checking
// (arrow-go's full validation: buffer sizes, offsets, UTF-8, nested
// children), and that every column has the batch's rows. A batch that
// passes can be decoded without a panic.
func validateBatch(rec arrow.RecordBatch) error {
	for c := 0; c < int(rec.NumCols()); c++ {
		if n := rec.Column(c).Len(); int64(n) != rec.NumRows() {
			return fmt.Errorf("column %q has %d rows, the batch %d: %s", rec.ColumnName(c), n, rec.NumRows(), damagedFix)
		}
	}
	if err := array.ValidateRecordFull(rec); err != nil {
		return fmt.Errorf("%v: %s", err, damagedFix)
	}
	return nil
}

// maxBuffer is the largest single buffer a damaged file can make the
// decoders allocate: a compressed Arrow buffer states its own decompressed
// size, and a Go allocation past the machine's memory is fatal, not an error.
const maxBuffer = 4 << 30

// boundedAllocator refuses (by a panic decodeSafely turns into an error)
// any single buffer larger than maxBuffer.
type boundedAllocator struct{ memory.Allocator }

func (a boundedAllocator) Allocate(size int) []byte {
	checkBufferSize(size)
	return a.Allocator.Allocate(size)
}

func (a boundedAllocator) Reallocate(size int, b []byte) []byte {
	checkBufferSize(size)
	return a.Allocator.Reallocate(size, b)
}

func checkBufferSize(size int) {
	if size < 0 || size > maxBuffer {
		panic(fmt.Sprintf("a buffer of %d bytes (more than %d)", size, maxBuffer))
	}
}

// checkArrowSchema walks the schema an Arrow IPC file's footer or a
// stream's first message holds, before arrow-go reads it: arrow-go sizes
// slices by the vector lengths it finds there (a damaged length asks for
// hundreds of GB, which kills the process) and follows child fields without
// a depth limit (a damaged offset can loop). Every vector must fit in its
// buffer, nesting stays under 64 levels and the walk under one visit per 4
// bytes.
func checkArrowSchema(f *os.File, size int64, fileFormat bool) error {
	var buf []byte
	var root flatbuffers.Table
	if fileFormat {
		// ARROW1, padding, messages, footer, int32 footer length, ARROW1.
		if size < 18 {
			return fmt.Errorf("arrow ipc file of %d bytes: too short for a footer", size)
		}
		var tail [10]byte
		if _, err := f.ReadAt(tail[:], size-10); err != nil {
			return err
		}
		n := int64(binary.LittleEndian.Uint32(tail[:4]))
		if n <= 0 || n > size-18 {
			return fmt.Errorf("arrow ipc footer length %d in a file of %d bytes", n, size)
		}
		buf = make([]byte, n)
		if _, err := f.ReadAt(buf, size-10-n); err != nil {
			return err
		}
		footer := fbRoot(buf)
		schema, ok := fbTable(footer, 1)
		if !ok {
			return nil // arrow-go reports a missing schema
		}
		root = schema
	} else {
		// A stream starts with its schema message: [0xFFFFFFFF] int32 length, Message.
		var head [8]byte
		if _, err := f.ReadAt(head[:], 0); err != nil {
			return nil // too short: arrow-go says so
		}
		off, n := int64(4), int64(int32(binary.LittleEndian.Uint32(head[:4])))
		if uint32(n) == 0xFFFFFFFF {
			off, n = 8, int64(int32(binary.LittleEndian.Uint32(head[4:])))
		}
		if n < 4 || n > size-off {
			return nil // arrow-go refuses the length
		}
		buf = make([]byte, n)
		if _, err := f.ReadAt(buf, off); err != nil {
			return err
		}
		msg := fbRoot(buf)
		if ht := msg.GetUint8Slot(6, 0); ht != 1 { // header_type: Schema
			return nil // arrow-go refuses a stream not starting with a schema
		}
		schema, ok := fbTable(msg, 2)
		if !ok {
			return nil
		}
		root = schema
	}
	w := fbWalk{buf: buf, budget: len(buf)/4 + 1}
	if err := w.keyValues(root, 2); err != nil {
		return err
	}
	if _, _, err := w.vector(root, 3, 8); err != nil { // features
		return err
	}
	return w.fields(root, 1, 0)
}

// fbWalk checks vectors in one flatbuffer.
type fbWalk struct {
	buf    []byte
	budget int
}

func fbRoot(buf []byte) flatbuffers.Table {
	return flatbuffers.Table{Bytes: buf, Pos: flatbuffers.GetUOffsetT(buf)}
}

// fbTable is the table in field i of t.
func fbTable(t flatbuffers.Table, i int) (flatbuffers.Table, bool) {
	o := flatbuffers.UOffsetT(t.Offset(flatbuffers.VOffsetT(4 + 2*i)))
	if o == 0 {
		return flatbuffers.Table{}, false
	}
	return flatbuffers.Table{Bytes: t.Bytes, Pos: t.Indirect(o + t.Pos)}, true
}

// vector checks that field i of t, a vector of elem-byte items (or a
// string, elem 1), lies inside the buffer.
func (w *fbWalk) vector(t flatbuffers.Table, i, elem int) (flatbuffers.UOffsetT, int, error) {
	o := flatbuffers.UOffsetT(t.Offset(flatbuffers.VOffsetT(4 + 2*i)))
	if o == 0 {
		return 0, 0, nil
	}
	start, n := t.Vector(o), t.VectorLen(o)
	if n < 0 || int64(start)+int64(n)*int64(elem) > int64(len(w.buf)) {
		return 0, 0, fmt.Errorf("arrow schema: a vector of %d items at byte %d runs past its %d-byte message", n, start, len(w.buf))
	}
	return start, n, nil
}

// tables visits the tables of vector field i of t.
func (w *fbWalk) tables(t flatbuffers.Table, i int, visit func(flatbuffers.Table) error) error {
	start, n, err := w.vector(t, i, 4)
	if err != nil {
		return err
	}
	for k := 0; k < n; k++ {
		if w.budget--; w.budget < 0 {
			return errors.New("arrow schema: more tables than its bytes can hold (a loop?)")
		}
		at := start + flatbuffers.UOffsetT(4*k)
		if err := visit(flatbuffers.Table{Bytes: w.buf, Pos: at + flatbuffers.GetUOffsetT(w.buf[at:])}); err != nil {
			return err
		}
	}
	return nil
}

// keyValues checks custom metadata, field i of t: KeyValue{key, value}.
func (w *fbWalk) keyValues(t flatbuffers.Table, i int) error {
	return w.tables(t, i, func(kv flatbuffers.Table) error {
		if _, _, err := w.vector(kv, 0, 1); err != nil {
			return err
		}
		_, _, err := w.vector(kv, 1, 1)
		return err
	})
}

// fields checks the Field vector in field i of t, children included.
func (w *fbWalk) fields(t flatbuffers.Table, i, depth int) error {
	if depth > 64 {
		return errors.New("arrow schema: fields nested more than 64 deep")
	}
	return w.tables(t, i, func(f flatbuffers.Table) error {
		if _, _, err := w.vector(f, 0, 1); err != nil { // name
			return err
		}
		if err := w.keyValues(f, 6); err != nil {
			return err
		}
		if typ, ok := fbTable(f, 3); ok {
			switch f.GetUint8Slot(8, 0) { // type_type
			case 14: // Union: typeIds [int]
				if _, _, err := w.vector(typ, 1, 4); err != nil {
					return err
				}
			case 10: // Timestamp: timezone string
				if _, _, err := w.vector(typ, 1, 1); err != nil {
					return err
				}
			}
		}
		return w.fields(f, 5, depth+1)
	})
}
