package datasets

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/bitutil"
	"github.com/apache/arrow-go/v18/arrow/compute"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/google/renameio/v2"
)

// Format is an on-disk encoding of record batches.
type Format int

const (
	// IPCStream is the Arrow IPC stream format (".arrow", ".ipc"): what
	// Hugging Face datasets writes and Dataset.from_file reads, and what
	// pyarrow.ipc.open_stream reads.
	IPCStream Format = iota
	// IPCFile is the Arrow IPC file format (".feather": Feather v2), with
	// a footer for random access.
	IPCFile
	Parquet // Parquet (".parquet"): pyarrow, DuckDB, Hugging Face datasets
)

// FormatOf picks the format from a path's extension.
func FormatOf(path string) (Format, error) {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".arrow", ".ipc":
		return IPCStream, nil
	case ".feather":
		return IPCFile, nil
	case ".parquet", ".pq":
		return Parquet, nil
	}
	return 0, fmt.Errorf("%s: unknown extension (want .arrow or .ipc (Arrow IPC stream), .feather (IPC file) or .parquet)", path)
}

// Default write batching: flush a record batch at whichever comes first.
const (
	DefaultBatchRows  = 1024
	defaultBatchBytes = 16 << 20
)

// BatchWriter streams record batches of one schema to a file that appears
// atomically at Commit; until then it is a temp file beside it, removed by Abort.
type BatchWriter struct {
	path   string
	schema *arrow.Schema
	pf     *renameio.PendingFile
	w      recordWriter
	done   bool
	wrote  bool // a record batch was written
}

// recordWriter is the writer of one format (IPC stream, IPC file, Parquet).
type recordWriter interface {
	Write(arrow.RecordBatch) error
	Close() error
}

// CreateBatchWriter starts writing path in the format its extension names.
func CreateBatchWriter(path string, schema *arrow.Schema) (*BatchWriter, error) {
	format, err := FormatOf(path)
	if err != nil {
		return nil, err
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create %s: %w", path, err)
		}
	}
	pf, err := createPending(path)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	w := &BatchWriter{path: path, schema: schema, pf: pf}
	switch format {
	case IPCStream:
		w.w = ipc.NewWriter(pf, ipc.WithSchema(schema))
	case IPCFile:
		w.w, err = ipc.NewFileWriter(pf, ipc.WithSchema(schema))
	case Parquet:
		props := parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy))
		w.w, err = pqarrow.NewFileWriter(schema, noClose{pf}, props, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
	}
	if err != nil {
		pf.Cleanup()
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	return w, nil
}

// emptyColumns is a column of no rows for each field of schema.
func emptyColumns(schema *arrow.Schema) []arrow.Array {
	cols := make([]arrow.Array, schema.NumFields())
	for i, f := range schema.Fields() {
		cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, f.Type, 0)
	}
	return cols
}

// Schema is the schema every batch must have.
func (w *BatchWriter) Schema() *arrow.Schema { return w.schema }

// Write appends one record batch.
func (w *BatchWriter) Write(rec arrow.RecordBatch) error {
	if err := w.w.Write(rec); err != nil {
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	w.wrote = true
	return nil
}

// Commit finishes the file and moves it into place.
func (w *BatchWriter) Commit() error {
	if w.done {
		return fmt.Errorf("write %s: already closed", w.path)
	}
	w.done = true
	var err error
	if !w.wrote {
		// A table of no rows still gets one (empty) record batch: Hugging
		// Face datasets' Dataset.from_file fails on a stream with none
		// ("cannot construct ChunkedArray from empty vector").
		rec := array.NewRecordBatch(w.schema, emptyColumns(w.schema), 0)
		err = w.w.Write(rec)
		rec.Release()
	}
	if err == nil {
		err = w.w.Close()
	}
	if err == nil {
		err = w.pf.CloseAtomicallyReplace()
	}
	if err != nil {
		w.pf.Cleanup()
		return fmt.Errorf("write %s: %w", w.path, err)
	}
	return nil
}

// Abort discards everything written; safe after Commit (then it does nothing).
func (w *BatchWriter) Abort() {
	if w.done {
		return
	}
	w.done = true
	w.pf.Cleanup()
}

// Writer writes typed rows, flushing a record batch every DefaultBatchRows rows
// or ~16 MiB of text, so memory stays bounded whatever the file size.
type Writer[T any] struct {
	bw      *BatchWriter
	b       *array.RecordBuilder
	add     func(*array.RecordBuilder, *T)
	size    func(*T) int
	rows    int
	bytes   int
	total   int64
	MaxRows int // rows per record batch (default DefaultBatchRows)
}

func newWriter[T any](path string, schema *arrow.Schema, add func(*array.RecordBuilder, *T), size func(*T) int) (*Writer[T], error) {
	bw, err := CreateBatchWriter(path, schema)
	if err != nil {
		return nil, err
	}
	return &Writer[T]{bw: bw, b: array.NewRecordBuilder(memory.DefaultAllocator, schema), add: add, size: size, MaxRows: DefaultBatchRows}, nil
}

// CreateExamples writes LaMP examples of one task.
func CreateExamples(path string, t *Task) (*Writer[Example], error) {
	return newWriter(path, ExampleSchema(t), appendExample, exampleSize)
}

// CreateChains writes tagged chains.
func CreateChains(path string) (*Writer[Chain], error) {
	return newWriter(path, ChainSchema, appendChain, func(c *Chain) int { return len(c.Chain) * 3 })
}

// CreateRollouts writes rollouts.
func CreateRollouts(path string) (*Writer[Rollout], error) {
	return newWriter(path, RolloutSchema, appendRollout, func(r *Rollout) int { return len(r.Completion) + 8*len(r.TokenIDs) })
}

// CreatePredictions writes predictions.
func CreatePredictions(path string) (*Writer[Prediction], error) {
	return newWriter(path, PredictionSchema, appendPrediction, func(p *Prediction) int { return len(p.Completion) + 64 })
}

func exampleSize(e *Example) int {
	n := len(e.Input) + len(e.Output) + len(e.Chain) + 64
	for i := range e.Profile {
		for _, f := range e.Profile[i].Fields {
			n += len(f) + 8
		}
		n += len(e.Profile[i].ID) + len(e.Profile[i].Extra) + 24
	}
	return n
}

// Write appends one row.
func (w *Writer[T]) Write(row *T) error {
	w.add(w.b, row)
	w.rows++
	w.total++
	w.bytes += w.size(row)
	if w.rows >= w.MaxRows || w.bytes >= defaultBatchBytes {
		return w.flush()
	}
	return nil
}

// Rows is how many rows were written so far.
func (w *Writer[T]) Rows() int64 { return w.total }

func (w *Writer[T]) flush() error {
	if w.rows == 0 {
		return nil
	}
	rec := w.b.NewRecordBatch()
	defer rec.Release()
	w.rows, w.bytes = 0, 0
	return w.bw.Write(rec)
}

// Commit flushes, finishes the file and moves it into place.
func (w *Writer[T]) Commit() error {
	defer w.b.Release()
	if err := w.flush(); err != nil {
		w.bw.Abort()
		return err
	}
	return w.bw.Commit()
}

// Abort discards the file.
func (w *Writer[T]) Abort() {
	w.bw.Abort()
}

// ReadOptions choose how a file is read.
type ReadOptions struct {
	BatchRows int   // rows per batch returned (default DefaultBatchRows); the last may be shorter
	Shard     Shard // zero value: the whole file
}

// batchSource yields a file's record batches in order; nil at the end.
type batchSource interface {
	next() (arrow.RecordBatch, error)
	close() error
}

// Reader iterates the record batches of a tagpr file (Arrow IPC file or
// stream, or Parquet), re-cut to a chosen size and filtered to one shard.
type Reader struct {
	path      string
	f         *os.File
	src       batchSource
	schema    *arrow.Schema
	kind      Kind
	task      *Task
	want      *arrow.Schema // tagpr's schema of the kind: which values are required
	opts      ReadOptions
	pending   []arrow.RecordBatch
	npending  int
	srcBatch  int
	srcDone   bool
	cur       arrow.RecordBatch
	delivered int
	curFirst  int
	err       error
}

// OpenReader opens a file and checks that it is a tagpr schema at this version.
func OpenReader(path string, opts ReadOptions) (*Reader, error) {
	if opts.BatchRows <= 0 {
		opts.BatchRows = DefaultBatchRows
	}
	if err := opts.Shard.validate(); err != nil {
		return nil, err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	var src batchSource
	var schema *arrow.Schema
	err = decodeSafely(func() (err error) {
		src, schema, err = openSource(f, opts.BatchRows)
		return err
	})
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	// Columns in another encoding of tagpr's types are cast to it as they
	// are read (conform): the reader's schema is the plain one.
	schema = plainSchema(schema)
	kind, task, want, err := checkSchema(schema)
	if err != nil {
		src.close()
		f.Close()
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	schema = withTypesOf(schema, want)
	return &Reader{path: path, f: f, src: src, schema: schema, kind: kind, task: task, want: want, opts: opts}, nil
}

var (
	arrowMagic    = []byte("ARROW1")
	parquetMagic  = []byte("PAR1")
	feather1Magic = []byte("FEA1")
)

func openSource(f *os.File, batchRows int) (batchSource, *arrow.Schema, error) {
	head := make([]byte, 8)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	mem := boundedAllocator{memory.DefaultAllocator}
	switch {
	case bytes.HasPrefix(head, arrowMagic):
		if err := checkArrowSchema(f, st.Size(), true); err != nil {
			return nil, nil, fmt.Errorf("arrow ipc file: %w: %s", err, damagedFix)
		}
		r, err := ipc.NewFileReader(f, ipc.WithAllocator(mem))
		if err != nil {
			return nil, nil, fmt.Errorf("arrow ipc file (truncated or damaged?): %w", err)
		}
		return &ipcFileSource{r: r}, r.Schema(), nil
	case bytes.HasPrefix(head, parquetMagic):
		pr, err := file.NewParquetReader(f, file.WithReadProps(parquet.NewReaderProperties(mem)))
		if err != nil {
			return nil, nil, fmt.Errorf("parquet (truncated or damaged?): %w", err)
		}
		fr, err := pqarrow.NewFileReader(pr, pqarrow.ArrowReadProperties{BatchSize: int64(batchRows)}, mem)
		if err != nil {
			pr.Close()
			return nil, nil, fmt.Errorf("parquet: %w", err)
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			pr.Close()
			return nil, nil, fmt.Errorf("parquet: %w", err)
		}
		schema, err := fr.Schema() // carries the stored Arrow schema's metadata; rr.Schema() does not
		if err != nil {
			rr.Release()
			pr.Close()
			return nil, nil, fmt.Errorf("parquet: %w", err)
		}
		return &parquetSource{pr: pr, rr: rr}, schema, nil
	case n == 0:
		return nil, nil, errors.New("empty file")
	case bytes.HasPrefix(head, feather1Magic):
		return nil, nil, errors.New("a Feather v1 file (the format before Arrow IPC; pyarrow deprecates it): rewrite it as Feather v2, pyarrow.feather.write_feather(pyarrow.feather.read_table(OLD), NEW)")
	default:
		if err := checkArrowSchema(f, st.Size(), false); err != nil {
			return nil, nil, fmt.Errorf("arrow ipc stream: %w: %s", err, damagedFix)
		}
		// No message is longer than the file: a damaged length fails
		// before its buffer is allocated. (ipc.NewReader would drop the
		// limits: only a MessageReader of its own keeps them.)
		opts := []ipc.Option{ipc.WithAllocator(mem), ipc.WithMetadataSizeLimit(st.Size()), ipc.WithBodySizeLimit(st.Size())}
		r, err := ipc.NewReaderFromMessageReader(ipc.NewMessageReader(f, opts...), opts...)
		if err != nil {
			return nil, nil, fmt.Errorf("neither Arrow IPC (file or stream) nor Parquet: %w", err)
		}
		return &ipcStreamSource{r: r}, r.Schema(), nil
	}
}

type ipcFileSource struct {
	r *ipc.FileReader
	i int
}

func (s *ipcFileSource) next() (arrow.RecordBatch, error) {
	if s.i >= s.r.NumRecords() {
		return nil, nil
	}
	s.i++
	return s.r.RecordBatchAt(s.i - 1)
}
func (s *ipcFileSource) close() error { return s.r.Close() }

type ipcStreamSource struct{ r *ipc.Reader }

func (s *ipcStreamSource) next() (arrow.RecordBatch, error) {
	rec, err := s.r.Read()
	if err == io.EOF {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec.Retain()
	return rec, nil
}
func (s *ipcStreamSource) close() error { s.r.Release(); return nil }

type parquetSource struct {
	pr *file.Reader
	rr pqarrow.RecordReader
}

func (s *parquetSource) next() (arrow.RecordBatch, error) {
	rec, err := s.rr.Read()
	if err == io.EOF {
		if rec != nil && rec.NumRows() > 0 {
			rec.Retain()
			return rec, nil
		}
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	rec.Retain()
	return rec, nil
}
func (s *parquetSource) close() error { s.rr.Release(); return s.pr.Close() }

// Kind is the file's schema kind.
func (r *Reader) Kind() Kind { return r.kind }

// Task is the task of a lamp_example file (nil for other kinds).
func (r *Reader) Task() *Task { return r.task }

// Schema is the file's Arrow schema, with its metadata.
func (r *Reader) Schema() *arrow.Schema { return r.schema }

// Next advances to the next batch; false at the end or on error (see Err).
func (r *Reader) Next() bool {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	if r.err != nil {
		return false
	}
	for r.npending < r.opts.BatchRows && !r.srcDone {
		var rec arrow.RecordBatch
		err := decodeSafely(func() (err error) {
			if rec, err = r.src.next(); err != nil || rec == nil {
				return err
			}
			if err = validateBatch(rec); err != nil {
				rec.Release()
				rec = nil
				return err
			}
			rec, err = conform(rec, r.schema)
			return err
		})
		if err != nil {
			r.err = fmt.Errorf("read %s: record batch %d (after record %d): %w", r.path, r.srcBatch, r.delivered+r.npending, err)
			return false
		}
		if rec == nil {
			r.srcDone = true
			break
		}
		r.srcBatch++
		r.keepShard(rec)
		rec.Release()
	}
	if r.npending == 0 {
		return false
	}
	r.cur = r.take(min(r.opts.BatchRows, r.npending))
	r.curFirst = r.delivered
	r.delivered += int(r.cur.NumRows())
	if err := checkRequired(r.cur, r.want, r.kind, r.curFirst); err != nil {
		r.err = fmt.Errorf("read %s: %w", r.path, err)
		return false
	}
	return true
}

// conform casts the columns of rec whose type is another encoding of the
// schema's (large_string, string_view, dictionary-encoded strings,
// large_list: plainType) to the schema's type; rec is released.
func conform(rec arrow.RecordBatch, schema *arrow.Schema) (arrow.RecordBatch, error) {
	defer rec.Release()
	cols := make([]arrow.Array, rec.NumCols())
	defer func() {
		for _, c := range cols {
			if c != nil {
				c.Release()
			}
		}
	}()
	for c := range cols {
		var err error
		if cols[c], err = conformArray(rec.Column(c), schema.Field(c).Type); err != nil {
			return nil, fmt.Errorf("column %q: %w", schema.Field(c).Name, err)
		}
	}
	return array.NewRecordBatch(schema, cols, rec.NumRows()), nil
}

// conformArray is a as type want (a's type made plain: plainType). Lists and
// structs are rebuilt around their conformed children (arrow-go's compute
// casts a list of structs of large_strings wrongly); strings are cast.
func conformArray(a arrow.Array, want arrow.DataType) (arrow.Array, error) {
	if arrow.TypeEqual(a.DataType(), want) {
		a.Retain()
		return a, nil
	}
	n := a.Len()
	if a.DataType().ID() == arrow.NULL {
		return array.MakeArrayOfNull(memory.DefaultAllocator, want, n), nil
	}
	var bitmap *memory.Buffer
	if a.NullN() > 0 {
		bitmap = memory.NewResizableBuffer(memory.DefaultAllocator)
		defer bitmap.Release()
		bitmap.Resize(int(bitutil.BytesForBits(int64(n))))
		bitutil.CopyBitmap(a.NullBitmapBytes(), a.Data().Offset(), n, bitmap.Bytes(), 0)
	}
	var data arrow.ArrayData
	switch w := want.(type) {
	case *arrow.ListType:
		l, ok := a.(array.ListLike)
		if !ok {
			return nil, fmt.Errorf("%s is not a list", a.DataType())
		}
		var first, last int64
		if n > 0 {
			first, _ = l.ValueOffsets(0)
			_, last = l.ValueOffsets(n - 1)
		}
		if last-first > math.MaxInt32 {
			return nil, fmt.Errorf("%s of %d items in one record batch: more than a list holds", a.DataType(), last-first)
		}
		offsets := make([]int32, n+1)
		for i := 0; i < n; i++ {
			s, _ := l.ValueOffsets(i)
			offsets[i] = int32(s - first)
		}
		offsets[n] = int32(last - first)
		items := array.NewSlice(l.ListValues(), first, last)
		defer items.Release()
		child, err := conformArray(items, w.Elem())
		if err != nil {
			return nil, err
		}
		defer child.Release()
		data = array.NewData(want, n, []*memory.Buffer{bitmap, memory.NewBufferBytes(arrow.Int32Traits.CastToBytes(offsets))}, []arrow.ArrayData{child.Data()}, a.NullN(), 0)
	case *arrow.StructType:
		st, ok := a.(*array.Struct)
		if !ok || st.NumField() != w.NumFields() {
			return nil, fmt.Errorf("%s is not %s", a.DataType(), want)
		}
		children := make([]arrow.ArrayData, st.NumField())
		for i := range children {
			child, err := conformArray(st.Field(i), w.Field(i).Type)
			if err != nil {
				return nil, err
			}
			defer child.Release()
			children[i] = child.Data()
		}
		data = array.NewData(want, n, []*memory.Buffer{bitmap}, children, a.NullN(), 0)
	default:
		return compute.CastToType(context.Background(), a, want)
	}
	defer data.Release()
	return array.MakeFromData(data), nil
}

// keepShard queues the runs of rec's rows that belong to this reader's shard.
func (r *Reader) keepShard(rec arrow.RecordBatch) {
	if r.opts.Shard.Count <= 1 {
		rec.Retain()
		r.pending = append(r.pending, rec)
		r.npending += int(rec.NumRows())
		return
	}
	keys := rec.Column(0).(*array.String)
	n := int(rec.NumRows())
	for i := 0; i < n; {
		if !r.opts.Shard.Contains(keys.Value(i)) {
			i++
			continue
		}
		j := i + 1
		for j < n && r.opts.Shard.Contains(keys.Value(j)) {
			j++
		}
		r.pending = append(r.pending, rec.NewSlice(int64(i), int64(j)))
		r.npending += j - i
		i = j
	}
}

// take removes the first n queued rows as one record batch.
func (r *Reader) take(n int) arrow.RecordBatch {
	if first := r.pending[0]; int(first.NumRows()) == n {
		r.pending = r.pending[1:]
		r.npending -= n
		return first
	}
	var parts []arrow.RecordBatch
	need := n
	for need > 0 {
		p := r.pending[0]
		rows := int(p.NumRows())
		if rows <= need {
			parts = append(parts, p)
			r.pending = r.pending[1:]
			need -= rows
			continue
		}
		parts = append(parts, p.NewSlice(0, int64(need)))
		r.pending[0] = p.NewSlice(int64(need), int64(rows))
		p.Release()
		need = 0
	}
	r.npending -= n
	cols := make([]arrow.Array, r.schema.NumFields())
	for c := range cols {
		arrs := make([]arrow.Array, len(parts))
		for k, p := range parts {
			arrs[k] = p.Column(c)
		}
		joined, err := array.Concatenate(arrs, memory.DefaultAllocator)
		if err != nil {
			panic(fmt.Sprintf("concatenate column %d of equal-schema batches: %v", c, err)) // cannot happen: same schema
		}
		cols[c] = joined
	}
	for _, p := range parts {
		p.Release()
	}
	rec := array.NewRecordBatch(r.schema, cols, int64(n))
	for _, c := range cols {
		c.Release()
	}
	return rec
}

// Batch is the current batch, valid until the next call to Next.
func (r *Reader) Batch() arrow.RecordBatch { return r.cur }

// BatchFirst is the position of the current batch's first row among the rows
// this reader has returned (the row number used in error messages).
func (r *Reader) BatchFirst() int { return r.curFirst }

// Err is the error that stopped Next, if any.
func (r *Reader) Err() error { return r.err }

// Close releases the file.
func (r *Reader) Close() error {
	if r.cur != nil {
		r.cur.Release()
		r.cur = nil
	}
	for _, p := range r.pending {
		p.Release()
	}
	r.pending = nil
	r.src.close()
	return r.f.Close()
}

// readAll reads every row of a file of the given kind through decode.
func readAll[T any](path string, kind Kind, opts ReadOptions, decode func(arrow.RecordBatch, int) ([]T, error)) ([]T, *Task, error) {
	r, err := OpenReader(path, opts)
	if err != nil {
		return nil, nil, err
	}
	defer r.Close()
	if r.Kind() != kind {
		return nil, nil, fmt.Errorf("read %s: holds %s rows, want %s", path, r.Kind(), kind)
	}
	var out []T
	for r.Next() {
		rows, err := decode(r.Batch(), r.BatchFirst())
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", path, err)
		}
		out = append(out, rows...)
	}
	if err := r.Err(); err != nil {
		return nil, nil, err
	}
	return out, r.Task(), nil
}

// ReadExamples reads every example of a lamp_example file (or of one shard).
func ReadExamples(path string, opts ReadOptions) ([]Example, *Task, error) {
	return readAll(path, KindExample, opts, DecodeExamples)
}

// ReadChains reads every row of a tagged_chain file.
func ReadChains(path string, opts ReadOptions) ([]Chain, error) {
	rows, _, err := readAll(path, KindChain, opts, DecodeChains)
	return rows, err
}

// ReadRollouts reads every row of a rollout file.
func ReadRollouts(path string, opts ReadOptions) ([]Rollout, error) {
	rows, _, err := readAll(path, KindRollout, opts, DecodeRollouts)
	return rows, err
}

// ReadPredictions reads every row of a prediction file.
func ReadPredictions(path string, opts ReadOptions) ([]Prediction, error) {
	rows, _, err := readAll(path, KindPrediction, opts, DecodePredictions)
	return rows, err
}

// createPending opens a temp file beside path (same directory, so the final
// rename is atomic and a failed write leaves nothing elsewhere).
func createPending(path string) (*renameio.PendingFile, error) {
	return renameio.NewPendingFile(path, renameio.WithPermissions(0o644), renameio.WithTempDir(filepath.Dir(path)))
}

// noClose hides Close from writers (Parquet's) that would close the pending file
// before it can be synced and renamed.
type noClose struct{ w io.Writer }

func (n noClose) Write(p []byte) (int, error) { return n.w.Write(p) }

// WriteRows writes every row to a new file at path (its directory is
// created) with the given constructor, e.g. CreatePredictions; the file
// appears complete or not at all.
func WriteRows[T any](path string, rows []T, create func(string) (*Writer[T], error)) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	w, err := create(path)
	if err != nil {
		return err
	}
	for i := range rows {
		if err := w.Write(&rows[i]); err != nil {
			w.Abort()
			return err
		}
	}
	return w.Commit()
}
