package ir

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/onnxpb"
)

const (
	// DefaultIRVersion is the IR version NewModel writes (ONNX Runtime 1.30 reads up to 13).
	DefaultIRVersion = 10
	// DefaultOpset is the ai.onnx opset NewModel imports when given 0.
	// 23 is the first with RMSNormalization; ONNX Runtime 1.30 runs up to 26.
	DefaultOpset = 23
	// Producer is written as producer_name.
	Producer = "tagpr"
)

// Opset is an operator set import: Domain "" is ai.onnx.
type Opset struct {
	Domain  string
	Version int64
}

// NewModel wraps g in a ModelProto importing ai.onnx at opset (0: DefaultOpset)
// plus any extra domains (e.g. {"com.microsoft", 1}). It returns g's first
// builder mistake, if any.
func NewModel(g *Graph, opset int64, extra ...Opset) (*onnxpb.ModelProto, error) {
	if g.Err() != nil {
		return nil, g.Err()
	}
	if opset == 0 {
		opset = DefaultOpset
	}
	m := &onnxpb.ModelProto{
		IrVersion:    DefaultIRVersion,
		ProducerName: Producer,
		Graph:        g.Proto,
	}
	SetOpset(m, "", opset)
	for _, o := range extra {
		SetOpset(m, o.Domain, o.Version)
	}
	return m, nil
}

// MustModel is NewModel for tests and fixed, known-good graphs: it panics on a builder mistake.
func MustModel(g *Graph, opset int64, extra ...Opset) *onnxpb.ModelProto {
	m, err := NewModel(g, opset, extra...)
	if err != nil {
		panic(err)
	}
	return m
}

// OpsetOf returns the version m imports for domain ("" or "ai.onnx" for the
// default set), or 0 when it does not import it.
func OpsetOf(m *onnxpb.ModelProto, domain string) int64 {
	domain = canonicalDomain(domain)
	for _, o := range m.GetOpsetImport() {
		if canonicalDomain(o.GetDomain()) == domain {
			return o.GetVersion()
		}
	}
	return 0
}

// SetOpset sets (or adds) m's import of domain to version.
func SetOpset(m *onnxpb.ModelProto, domain string, version int64) {
	for _, o := range m.OpsetImport {
		if canonicalDomain(o.GetDomain()) == canonicalDomain(domain) {
			o.Version = version
			return
		}
	}
	d := domain
	m.OpsetImport = append(m.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: &d, Version: version})
}

func canonicalDomain(d string) string {
	if d == "ai.onnx" {
		return ""
	}
	return d
}

// GraphOf wraps m's main graph for editing.
func GraphOf(m *onnxpb.ModelProto) (*Graph, error) {
	if m.GetGraph() == nil {
		return nil, fmt.Errorf("model has no graph")
	}
	return WrapGraph(m.Graph), nil
}
