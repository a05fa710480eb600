package lm

import (
	"fmt"
	"os"
	"sort"
	"strings"

	ortgo "github.com/yalue/onnxruntime_go"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// IOSpec is one declared graph input or output.
type IOSpec struct {
	Name string   `json:"name"`
	Type string   `json:"type"`
	Dims []string `json:"dims"` // sizes, or symbolic names ("?" when unnamed)
}

// Info is what `tagpr model info` reports about a model file.
type Info struct {
	Path      string           `json:"path"`
	IRVersion int64            `json:"ir_version"`
	Opsets    map[string]int64 `json:"opsets"` // "" is ai.onnx
	Producer  string           `json:"producer"`
	Inputs    []IOSpec         `json:"inputs"`
	Outputs   []IOSpec         `json:"outputs"`
	Nodes     int              `json:"nodes"`
	// Params counts the elements of float initializers (the weights),
	// leaving out the built-in rotary tables; ParamBytes is their storage.
	// A weight stored twice (an exporter's transposed copy of a tied
	// embedding) counts twice; values in Constant nodes do not count.
	Params     int64 `json:"params"`
	ParamBytes int64 `json:"param_bytes"`
	// DModel is the width of the input_ids embedding table, when the graph
	// gathers input_ids from an initializer.
	DModel int `json:"d_model,omitempty"`
	// Heads is the number of query heads from config.json (the graph's IO
	// does not show it); 0 when unknown.
	Heads int `json:"heads,omitempty"`
	// Layout is the causal-LM layout, or nil with LayoutError saying why the
	// model does not fit it.
	Layout      *Layout   `json:"layout,omitempty"`
	LayoutError string    `json:"layout_error,omitempty"`
	Config      *HFConfig `json:"-"`
}

// Inspect reads a model file (or a folder holding one) and config.json
// beside it without running it: no runtime library is needed.
func Inspect(path string, opts CheckOptions) (*Info, error) {
	file, err := ResolveModelPath(path)
	if err != nil {
		return nil, err
	}
	if err := verifyPinned(file); err != nil { // the model and every companion it reads
		return nil, err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", file, err)
	}
	pm, err := ir.Read(data, file)
	if err != nil {
		return nil, err
	}
	hc, _, err := findConfigs(file)
	if err != nil {
		return nil, err
	}
	if opts.Config == nil {
		opts.Config = hc
	}
	g := pm.GetGraph()
	info := &Info{Path: file, IRVersion: pm.GetIrVersion(), Opsets: map[string]int64{}, Producer: strings.TrimSpace(pm.GetProducerName() + " " + pm.GetProducerVersion()),
		Nodes: len(g.GetNode()), Config: opts.Config}
	for _, o := range pm.GetOpsetImport() {
		d := o.GetDomain()
		if d == "ai.onnx" {
			d = ""
		}
		info.Opsets[d] = o.GetVersion()
	}
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.GetInitializer() {
		inits[t.GetName()] = t
		switch t.GetDataType() {
		case ir.Float, ir.Double, ir.Float16, ir.BFloat16:
			if strings.HasPrefix(t.GetName(), "model.rotary.") {
				continue
			}
			n := ir.NumElements(t.GetDims())
			info.Params += n
			info.ParamBytes += n * int64(ir.ElemSize(t.GetDataType()))
		}
	}
	var ins, outs []ort.IOInfo
	for _, v := range g.GetInput() {
		if inits[v.GetName()] != nil {
			continue // IR < 4 lists initializers as inputs
		}
		spec, io := describe(v)
		info.Inputs, ins = append(info.Inputs, spec), append(ins, io)
	}
	for _, v := range g.GetOutput() {
		spec, io := describe(v)
		info.Outputs, outs = append(info.Outputs, spec), append(outs, io)
	}
	for _, n := range g.GetNode() {
		if n.GetOpType() == "Gather" && len(n.GetInput()) == 2 && n.GetInput()[1] == InputIDs {
			if t := inits[n.GetInput()[0]]; t != nil && len(t.GetDims()) == 2 {
				info.DModel = int(t.GetDims()[1])
			}
		}
	}
	if c := opts.Config; c != nil {
		info.Heads = c.Heads()
	}
	lay, err := ReadLayout(file, ins, outs, opts)
	if err != nil {
		info.LayoutError = err.Error()
	} else {
		info.Layout = &lay
	}
	return info, nil
}

// describe turns a graph ValueInfo into a printable spec and the runtime's
// IOInfo (ONNX's element type numbers are the runtime's).
func describe(v *onnxpb.ValueInfoProto) (IOSpec, ort.IOInfo) {
	io := ort.IOInfo{Name: v.GetName()}
	spec := IOSpec{Name: v.GetName(), Type: "non-tensor"}
	elem, dims, params, ok := ir.ShapeOf(v)
	if v.GetType().GetTensorType() == nil {
		return spec, io
	}
	io.OrtValueType = ortgo.ONNXTypeTensor
	io.DataType = ortgo.TensorElementDataType(elem)
	spec.Type = typeName(io.DataType)
	if !ok {
		spec.Dims = []string{"(unknown rank)"}
		return spec, io
	}
	io.Dimensions = ortgo.Shape(dims)
	for i, d := range dims {
		switch {
		case d >= 0:
			spec.Dims = append(spec.Dims, fmt.Sprint(d))
		case params[i] != "":
			spec.Dims = append(spec.Dims, params[i])
		default:
			spec.Dims = append(spec.Dims, "?")
		}
	}
	return spec, io
}

// Summary is the human-readable report.
func (in *Info) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "model        %s\n", in.Path)
	var ops []string
	for d, v := range in.Opsets {
		if d == "" {
			d = "ai.onnx"
		}
		ops = append(ops, fmt.Sprintf("%s %d", d, v))
	}
	sort.Strings(ops)
	fmt.Fprintf(&b, "ir version   %d\nopsets       %s\nproducer     %s\nnodes        %d\n", in.IRVersion, strings.Join(ops, ", "), orDash(in.Producer), in.Nodes)
	fmt.Fprintf(&b, "parameters   %d (%s)\n", in.Params, humanBytes(in.ParamBytes))
	b.WriteString("inputs\n")
	for _, s := range in.Inputs {
		fmt.Fprintf(&b, "  %-28s %-8s [%s]\n", s.Name, s.Type, strings.Join(s.Dims, ", "))
	}
	b.WriteString("outputs\n")
	for _, s := range in.Outputs {
		fmt.Fprintf(&b, "  %-28s %-8s [%s]\n", s.Name, s.Type, strings.Join(s.Dims, ", "))
	}
	if in.Layout == nil {
		fmt.Fprintf(&b, "causal LM    no: %s\n", in.LayoutError)
		return b.String()
	}
	l := in.Layout
	fmt.Fprintf(&b, "causal LM    yes (%s, position_ids %s", l.Float, yesNo(l.HasPositionIDs))
	if l.HasCacheBranch {
		b.WriteString(", Optimum merged decoder")
	}
	b.WriteString(")\n")
	fmt.Fprintf(&b, "  layers     %d\n", l.Layers)
	fmt.Fprintf(&b, "  heads      %s query, %s kv (head_dim %s)\n", orUnknown(in.Heads), orUnknown(l.KVHeads), orUnknown(l.HeadDim))
	fmt.Fprintf(&b, "  d_model    %s\n", orUnknown(in.DModel))
	fmt.Fprintf(&b, "  vocab      %s\n", orUnknown(l.Vocab))
	if c := in.Config; c != nil && c.ModelType != "" {
		fmt.Fprintf(&b, "  model_type %s (config.json)\n", c.ModelType)
	}
	if len(l.Extra) > 0 {
		fmt.Fprintf(&b, "  extra inputs (bind before generating): %s\n", strings.Join(l.Extra, ", "))
	}
	return b.String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func orUnknown(n int) string {
	if n <= 0 {
		return "unknown"
	}
	return fmt.Sprint(n)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
