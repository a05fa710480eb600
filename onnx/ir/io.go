package ir

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/google/renameio/v2"
	"google.golang.org/protobuf/proto"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// maxProtoBytes is protobuf's 2 GiB message limit; bigger models need external data.
const maxProtoBytes = 1<<31 - 1

// Read parses ONNX model bytes; label (a path or name) appears in errors.
// Tensors stored in external files stay unresolved: use Load for files, or
// LoadExternalData.
func Read(data []byte, label string) (*onnxpb.ModelProto, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("read model %s: empty input", label)
	}
	m := &onnxpb.ModelProto{}
	if err := proto.Unmarshal(data, m); err != nil {
		return nil, fmt.Errorf("read model %s: not an ONNX model: %w", label, err)
	}
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("read model %s: not an ONNX model: no graph", label)
	}
	return m, nil
}

// Load reads an ONNX model file and brings every external-data tensor into
// memory (raw_data), resolving locations relative to the model's directory.
func Load(path string) (*onnxpb.ModelProto, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	m, err := Read(data, path)
	if err != nil {
		return nil, err
	}
	if err := LoadExternalData(m, filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("load model %s: %w", path, err)
	}
	return m, nil
}

// Marshal encodes m deterministically: the same model always gives the same
// bytes, and a model read and marshalled again keeps its bytes.
func Marshal(m *onnxpb.ModelProto) ([]byte, error) {
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal model: %w", err)
	}
	if len(b) > maxProtoBytes {
		return nil, fmt.Errorf("marshal model: %d bytes is over protobuf's 2 GiB limit; write with WriteOptions.ExternalDataThreshold", len(b))
	}
	return b, nil
}

// WriteOptions control Write.
type WriteOptions struct {
	// ExternalDataThreshold > 0 moves every initializer of at least that many
	// bytes into one data file beside the model. 0 keeps all data inline.
	ExternalDataThreshold int
	// ExternalDataFile is the data file's name in the model's directory
	// (default: the model file's name + ".data", e.g. model.onnx.data).
	ExternalDataFile string
}

// externalAlign aligns each external tensor's offset, so readers that map the file see aligned data.
const externalAlign = 64

// Write writes m to path atomically (temporary file, then rename). With an
// external-data threshold, the data file is written (atomically) first and
// m itself is left as it was. The tensors' bytes are streamed to the data
// file, not copied: writing a model costs about one copy of its weights less
// than the model itself (m is edited while Write runs and restored before it
// returns, so it must not be read concurrently).
func Write(m *onnxpb.ModelProto, path string, opts WriteOptions) error {
	var unresolved error
	_ = forEachTensor(m, func(t *onnxpb.TensorProto, where string) error {
		if t.GetDataLocation() == onnxpb.TensorProto_EXTERNAL && unresolved == nil {
			unresolved = fmt.Errorf("%s (%s) is still in external file %q; load the model with ir.Load or ir.LoadExternalData first", tensorLabel(t), where, externalKey(t, "location"))
		}
		return nil
	})
	if unresolved != nil {
		return fmt.Errorf("write model %s: %w", path, unresolved)
	}
	if opts.ExternalDataThreshold > 0 {
		name := opts.ExternalDataFile
		if name == "" {
			name = filepath.Base(path) + ".data"
		}
		if filepath.IsAbs(name) || strings.Contains(filepath.ToSlash(name), "/") {
			return fmt.Errorf("write model %s: external data file %q must be a plain file name in the model's directory", path, name)
		}
		dataPath := filepath.Join(filepath.Dir(path), name)
		restore, err := externalize(m, dataPath, name, opts.ExternalDataThreshold)
		defer restore()
		if err != nil {
			return fmt.Errorf("write model %s: external data %s: %w", path, dataPath, err)
		}
	}
	if err := writeStreamed(path, m); err != nil {
		return fmt.Errorf("write model %s: %w", path, err)
	}
	return nil
}

// writeStreamed writes Marshal(m)'s bytes to path atomically through
// MarshalTo: no buffer holds the model.
func writeStreamed(path string, m *onnxpb.ModelProto) error {
	if n := (proto.MarshalOptions{Deterministic: true}).Size(m); n > maxProtoBytes {
		return fmt.Errorf("%d bytes is over protobuf's 2 GiB limit; write with WriteOptions.ExternalDataThreshold", n)
	}
	f, err := renameio.NewPendingFile(path, renameio.WithPermissions(0o644))
	if err != nil {
		return err
	}
	defer f.Cleanup() // a no-op once replaced
	w := bufio.NewWriterSize(f, 1<<20)
	if _, err := MarshalTo(w, m); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.CloseAtomicallyReplace()
}

// externalize streams the initializers of m (subgraphs included) of at
// least threshold bytes into the data file at dataPath, written atomically
// and only when one qualifies, and points them at it as location. The
// returned function puts m's tensors back as they were; it is never nil.
func externalize(m *onnxpb.ModelProto, dataPath, location string, threshold int) (restore func(), err error) {
	type saved struct {
		t        *onnxpb.TensorProto
		raw      []byte
		floats   []float32
		doubles  []float64
		int32s   []int32
		int64s   []int64
		uint64s  []uint64
		location *onnxpb.TensorProto_DataLocation
		external []*onnxpb.StringStringEntryProto
	}
	var undo []saved
	restore = func() {
		for _, s := range undo {
			s.t.RawData, s.t.FloatData, s.t.DoubleData, s.t.Int32Data, s.t.Int64Data, s.t.Uint64Data = s.raw, s.floats, s.doubles, s.int32s, s.int64s, s.uint64s
			s.t.DataLocation, s.t.ExternalData = s.location, s.external
		}
		undo = nil
	}
	var (
		f   *renameio.PendingFile
		w   *bufio.Writer
		off int
	)
	defer func() {
		if f != nil {
			f.Cleanup() // a no-op once replaced
		}
	}()
	pad := make([]byte, externalAlign)
	err = forEachInitializer(m.GetGraph(), func(t *onnxpb.TensorProto) error {
		if t.GetDataType() == String || ElemSize(t.GetDataType()) == 0 {
			return nil
		}
		raw, err := RawBytes(t)
		if err != nil {
			return err
		}
		if len(raw) < threshold {
			return nil
		}
		if f == nil {
			if f, err = renameio.NewPendingFile(dataPath, renameio.WithPermissions(0o644)); err != nil {
				return err
			}
			w = bufio.NewWriterSize(f, 1<<20)
		}
		if n := (externalAlign - off%externalAlign) % externalAlign; n > 0 {
			if _, err := w.Write(pad[:n]); err != nil {
				return err
			}
			off += n
		}
		if _, err := w.Write(raw); err != nil {
			return err
		}
		undo = append(undo, saved{t, t.RawData, t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data, t.DataLocation, t.ExternalData})
		t.RawData, t.FloatData, t.DoubleData, t.Int32Data, t.Int64Data, t.Uint64Data = nil, nil, nil, nil, nil, nil
		t.DataLocation = onnxpb.TensorProto_EXTERNAL.Enum()
		t.ExternalData = []*onnxpb.StringStringEntryProto{
			{Key: "location", Value: location},
			{Key: "offset", Value: strconv.Itoa(off)},
			{Key: "length", Value: strconv.Itoa(len(raw))},
		}
		off += len(raw)
		return nil
	})
	if err == nil && f != nil {
		if err = w.Flush(); err == nil {
			err = f.CloseAtomicallyReplace()
		}
	}
	return restore, err
}

// LoadExternalData reads every tensor of m whose data lives in an external
// file (location relative to dir) into raw_data and marks it inline. Errors
// name the tensor and the file.
func LoadExternalData(m *onnxpb.ModelProto, dir string) error {
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	return forEachTensor(m, func(t *onnxpb.TensorProto, where string) error {
		if t.GetDataLocation() != onnxpb.TensorProto_EXTERNAL {
			return nil
		}
		raw, err := readExternal(t, dir, files)
		if err != nil {
			return fmt.Errorf("%s (%s): %w", tensorLabel(t), where, err)
		}
		t.RawData = raw
		t.ExternalData = nil
		t.DataLocation = nil
		return nil
	})
}

func externalKey(t *onnxpb.TensorProto, key string) string {
	for _, e := range t.GetExternalData() {
		if e.GetKey() == key {
			return e.GetValue()
		}
	}
	return ""
}

func readExternal(t *onnxpb.TensorProto, dir string, files map[string]*os.File) ([]byte, error) {
	loc := externalKey(t, "location")
	if loc == "" {
		return nil, errors.New("external data without a location")
	}
	clean := filepath.Clean(filepath.FromSlash(loc))
	if filepath.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("external data location %q points outside the model's directory", loc)
	}
	path := filepath.Join(dir, clean)
	parse := func(key string) (int64, bool, error) {
		s := externalKey(t, key)
		if s == "" {
			return 0, false, nil
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v < 0 {
			return 0, false, fmt.Errorf("external data file %s: bad %s %q", path, key, s)
		}
		return v, true, nil
	}
	off, _, err := parse("offset")
	if err != nil {
		return nil, err
	}
	length, hasLength, err := parse("length")
	if err != nil {
		return nil, err
	}
	f := files[path]
	if f == nil {
		if f, err = os.Open(path); err != nil {
			return nil, fmt.Errorf("external data: %w", err)
		}
		files[path] = f
	}
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("external data file %s: %w", path, err)
	}
	want := int64(-1)
	if sz := ElemSize(t.GetDataType()); sz > 0 && t.GetSegment() == nil {
		if n := NumElements(t.GetDims()); n >= 0 {
			want = n * int64(sz)
		}
	}
	if !hasLength {
		length = st.Size() - off
		if want >= 0 {
			length = want
		}
	}
	if want >= 0 && length != want {
		return nil, fmt.Errorf("external data file %s: length %d, but dims %v of %s need %d bytes", path, length, t.GetDims(), t.GetDataType(), want)
	}
	if off > st.Size() || length > st.Size()-off {
		return nil, fmt.Errorf("external data file %s: bytes [%d, %d) are past its end (%d bytes)", path, off, off+length, st.Size())
	}
	raw := make([]byte, length)
	if _, err := f.ReadAt(raw, off); err != nil && !(errors.Is(err, io.EOF) && length == 0) {
		return nil, fmt.Errorf("external data file %s: %w", path, err)
	}
	return raw, nil
}

// forEachInitializer visits g's initializers and those of all its subgraphs.
func forEachInitializer(g *onnxpb.GraphProto, fn func(*onnxpb.TensorProto) error) error {
	if g == nil {
		return nil
	}
	for _, t := range g.Initializer {
		if err := fn(t); err != nil {
			return err
		}
	}
	for _, n := range g.Node {
		for _, a := range n.Attribute {
			for _, sg := range subgraphs(a) {
				if err := forEachInitializer(sg, fn); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func subgraphs(a *onnxpb.AttributeProto) []*onnxpb.GraphProto {
	if a.G != nil {
		return append([]*onnxpb.GraphProto{a.G}, a.Graphs...)
	}
	return a.Graphs
}

// forEachTensor visits every TensorProto in m: initializers, sparse
// initializers, node attributes, subgraphs, functions and training graphs;
// where describes the place for errors.
func forEachTensor(m *onnxpb.ModelProto, fn func(t *onnxpb.TensorProto, where string) error) error {
	if err := graphTensors(m.GetGraph(), fn); err != nil {
		return err
	}
	for _, f := range m.GetFunctions() {
		if err := nodeTensors(f.GetNode(), "function "+f.GetName(), fn); err != nil {
			return err
		}
	}
	for _, ti := range m.GetTrainingInfo() {
		if err := graphTensors(ti.GetInitialization(), fn); err != nil {
			return err
		}
		if err := graphTensors(ti.GetAlgorithm(), fn); err != nil {
			return err
		}
	}
	return nil
}

func graphTensors(g *onnxpb.GraphProto, fn func(*onnxpb.TensorProto, string) error) error {
	if g == nil {
		return nil
	}
	where := fmt.Sprintf("initializer of graph %q", g.GetName())
	for _, t := range g.Initializer {
		if err := fn(t, where); err != nil {
			return err
		}
	}
	for _, s := range g.SparseInitializer {
		for _, t := range []*onnxpb.TensorProto{s.GetValues(), s.GetIndices()} {
			if t != nil {
				if err := fn(t, "sparse "+where); err != nil {
					return err
				}
			}
		}
	}
	return nodeTensors(g.Node, fmt.Sprintf("graph %q", g.GetName()), fn)
}

func nodeTensors(nodes []*onnxpb.NodeProto, scope string, fn func(*onnxpb.TensorProto, string) error) error {
	for i, n := range nodes {
		for _, a := range n.Attribute {
			where := fmt.Sprintf("attribute %q of %s in %s", a.GetName(), nodeLabel(n, i), scope)
			ts := append([]*onnxpb.TensorProto{}, a.Tensors...)
			if a.T != nil {
				ts = append(ts, a.T)
			}
			for _, s := range append([]*onnxpb.SparseTensorProto{a.SparseTensor}, a.SparseTensors...) {
				if s != nil {
					ts = append(ts, s.Values, s.Indices)
				}
			}
			for _, t := range ts {
				if t != nil {
					if err := fn(t, where); err != nil {
						return err
					}
				}
			}
			for _, sg := range subgraphs(a) {
				if err := graphTensors(sg, fn); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// nodeLabel names a node in errors: its name and op type, or its index when unnamed.
func nodeLabel(n *onnxpb.NodeProto, index int) string {
	op := n.GetOpType()
	if n.GetDomain() != "" {
		op = n.GetDomain() + "." + op
	}
	if n.GetName() != "" {
		return fmt.Sprintf("node %q (%s)", n.GetName(), op)
	}
	return fmt.Sprintf("node #%d (%s)", index, op)
}
