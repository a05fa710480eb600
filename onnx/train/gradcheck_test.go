package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// feed is a non-trainable input for a gradient check.
type feed struct {
	shape []int64
	f64   []float64
	i64   []int64
}

func (f feed) value() (ort.Value, error) {
	if f.f64 != nil {
		return ort.NewTensor(f.shape, f.f64)
	}
	return ort.NewTensor(f.shape, f.i64)
}

// gradCheck differentiates loss w.r.t. params in a float64 model and
// compares every gradient entry (up to maxPerParam random entries per
// weight) with central finite differences through ORT. It returns the max
// error, each relative to max(|analytic|, |numeric|, 1e-3·largest gradient).
func gradCheck(t *testing.T, m *onnxpb.ModelProto, loss string, params []string, feeds map[string]feed, maxPerParam int) float64 {
	t.Helper()
	shapes := map[string][]int64{}
	for n, f := range feeds {
		shapes[n] = f.shape
	}
	sp, err := Specialize(m, shapes)
	if err != nil {
		t.Fatal(err)
	}
	tg, err := Differentiate(sp, loss, params, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(tg.Model)
	if err != nil {
		t.Fatal(err)
	}
	sess, err := ort.NewSession(b, "gradcheck", ort.Options{IntraOpThreads: 1, OptLevel: gradCheckOpt})
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Destroy()
	inits := map[string]*onnxpb.TensorProto{}
	for _, it := range sp.Model.Graph.Initializer {
		inits[it.GetName()] = it
	}
	in := map[string]ort.Value{}
	data := map[string][]float64{}
	for _, p := range params {
		d, err := ir.Float64s(inits[p])
		if err != nil {
			t.Fatalf("param %s: %v", p, err)
		}
		data[p] = d
		v, err := ort.NewTensor(shapeOrOne(inits[p].GetDims()), d)
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in[p] = v
	}
	for n, f := range feeds {
		if ir.NumElements(f.shape) == 0 {
			continue // Specialize folded it into the graph
		}
		v, err := f.value()
		if err != nil {
			t.Fatal(err)
		}
		defer v.Destroy()
		in[n] = v
	}
	run := func() (float64, map[string][]float64) {
		res, err := sess.Run(in, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Destroy()
		l, err := ort.Data[float64](loss, res.Get(loss))
		if err != nil {
			t.Fatal(err)
		}
		grads := map[string][]float64{}
		for _, p := range params {
			gd, err := ort.Data[float64](tg.Grads[p], res.Get(tg.Grads[p]))
			if err != nil {
				t.Fatal(err)
			}
			grads[p] = append([]float64{}, gd...)
		}
		return l[0], grads
	}
	l0, an := run()
	if math.IsNaN(l0) || math.IsInf(l0, 0) {
		t.Fatalf("loss is %v", l0)
	}
	scale := 0.0
	for _, g := range an {
		for _, x := range g {
			scale = math.Max(scale, math.Abs(x))
		}
	}
	if scale == 0 {
		t.Fatal("all gradients are zero: the check would prove nothing")
	}
	rng := rand.New(rand.NewPCG(7, 7))
	worst := 0.0
	for _, p := range params {
		d := data[p]
		idx := rng.Perm(len(d))
		if maxPerParam > 0 && len(idx) > maxPerParam {
			idx = idx[:maxPerParam]
		}
		for _, i := range idx {
			w := d[i]
			// Fourth-order central difference: truncation error O(h⁴).
			h := fdStep * math.Max(1, math.Abs(w))
			at := func(x float64) float64 { d[i] = x; l, _ := run(); return l }
			fd := (8*(at(w+h)-at(w-h)) - (at(w+2*h) - at(w-2*h))) / (12 * h)
			d[i] = w
			a := an[p][i]
			denom := math.Max(math.Max(math.Abs(a), math.Abs(fd)), 1e-3*scale)
			e := math.Abs(a-fd) / denom
			if e > worst {
				worst = e
			}
			if e > 1e-6 {
				t.Errorf("%s[%d]: analytic %.12g, numeric %.12g, rel err %.3g", p, i, a, fd, e)
			}
		}
	}
	return worst
}

// fdStep is the finite-difference step (relative to max(1, |w|)).
var fdStep = 1e-4

// gradCheckOpt is the ORT optimization level of gradient checks: "all"
// fuses subgraphs into kernels that lose ~1e-7 of precision in double.
var gradCheckOpt = "basic"

// opBench builds one-op float64 graphs for gradient checks.
type opBench struct {
	g      *ir.Graph
	rng    *rand.Rand
	params []string
	feeds  map[string]feed
	n      int
	opset  int64
}

func newOpBench(seed uint64) *opBench {
	return &opBench{g: ir.NewGraph("check"), rng: rand.New(rand.NewPCG(seed, 1)), feeds: map[string]feed{}}
}

func (b *opBench) name(p string) string {
	b.n++
	return p + string(rune('a'+b.n%26)) + string(rune('0'+b.n/26))
}

func (b *opBench) randn(n int64, lo, hi float64) []float64 {
	d := make([]float64, n)
	for i := range d {
		d[i] = lo + (hi-lo)*b.rng.Float64()
	}
	return d
}

// param is a trainable float64 weight with values in [lo, hi).
func (b *opBench) param(lo, hi float64, shape ...int64) string {
	n := b.g.Initializer(b.name("w"), ir.Tensor("", shape, b.randn(ir.NumElements(shape), lo, hi)))
	b.params = append(b.params, n)
	return n
}

// constant is a non-trainable float64 initializer.
func (b *opBench) constant(lo, hi float64, shape ...int64) string {
	return b.g.Initializer(b.name("k"), ir.Tensor("", shape, b.randn(ir.NumElements(shape), lo, hi)))
}

func (b *opBench) ints(v ...int64) string {
	return b.g.Initializer(b.name("i"), ir.Vector("", v...))
}

func (b *opBench) intTensor(shape []int64, v []int64) string {
	return b.g.Initializer(b.name("t"), ir.Tensor("", shape, v))
}

func (b *opBench) scalarD(v float64) string {
	return b.g.Initializer(b.name("s"), ir.Scalar("", v))
}

// input declares a float64 data input (not trainable) fed at run time.
func (b *opBench) input(lo, hi float64, shape ...int64) string {
	n := b.name("x")
	dims := make([]any, len(shape))
	for i := range shape {
		dims[i] = "d" + string(rune('0'+i))
	}
	b.g.Input(n, ir.Double, dims...)
	b.feeds[n] = feed{shape: shape, f64: b.randn(ir.NumElements(shape), lo, hi)}
	return n
}

func (b *opBench) op(op string, ins []string, attrs ...ir.Attribute) string {
	return b.g.Op(op, ins, attrs...)
}

// check adds loss = Σ 0.3·y² + 0.7·y and runs the gradient check.
func (b *opBench) check(t *testing.T, y string) {
	t.Helper()
	sq := b.op("Mul", []string{b.op("Mul", []string{y, y}), b.scalarD(0.3)})
	s := b.op("Add", []string{sq, b.op("Mul", []string{y, b.scalarD(0.7)})})
	l := b.op("ReduceSum", []string{s}, ir.AttrInt("keepdims", 0))
	loss := b.op("Reshape", []string{l, b.ints(1)})
	b.g.Output(loss, ir.Double, 1)
	if b.opset == 0 {
		b.opset = 18
	}
	m, err := ir.NewModel(b.g, b.opset)
	if err != nil {
		t.Fatal(err)
	}
	worst := gradCheck(t, m, loss, b.params, b.feeds, 40)
	t.Logf("max rel err %.3g", worst)
}
