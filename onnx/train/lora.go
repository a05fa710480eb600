package train

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// MatchName reports whether name matches any pattern. A pattern is a regular
// expression when it starts with "re:", else a glob where * matches any run
// of characters (dots and slashes included) and ? one character.
func MatchName(name string, patterns []string) bool {
	for _, p := range patterns {
		if re, ok := strings.CutPrefix(p, "re:"); ok {
			if m, err := regexp.MatchString(re, name); err == nil && m {
				return true
			}
			continue
		}
		if globMatch(p, name) {
			return true
		}
	}
	return false
}

// ValidatePatterns reports the first "re:" pattern that is not a valid
// regular expression, with the parser's error (MatchName would never match
// it).
func ValidatePatterns(patterns []string) error {
	for _, p := range patterns {
		if re, ok := strings.CutPrefix(p, "re:"); ok {
			if _, err := regexp.Compile(re); err != nil {
				return fmt.Errorf("pattern %q: %w", p, err)
			}
		}
	}
	return nil
}

func globMatch(p, s string) bool {
	var b strings.Builder
	b.WriteString("^")
	for _, r := range p {
		switch r {
		case '*':
			b.WriteString(".*")
		case '?':
			b.WriteString(".")
		default:
			b.WriteString(regexp.QuoteMeta(string(r)))
		}
	}
	b.WriteString("$")
	ok, _ := regexp.MatchString(b.String(), s)
	return ok
}

// LoRA configures low-rank adapters on MatMul/Gemm weights.
type LoRA struct {
	Rank  int
	Alpha float64 // the adapter output is scaled by Alpha/Rank; 0 means Alpha = Rank
	// Targets are module-name patterns (see ResolveLoRATargets): a glob, a
	// re: expression, or a plain name matching the last parts of module
	// names as PEFT's target_modules (q_proj). Empty: every linear layer
	// but the lm head.
	Targets []string
	Seed    uint64
	// TargetsKey names the setting Targets came from in a *TargetsError
	// (default --lora-targets, train lm's flag): a config key, say.
	TargetsKey string `json:"-"`
}

// keyed makes a *TargetsError in err name c.TargetsKey; before any wrapping,
// which formats the message once.
func (c LoRA) keyed(err error) error {
	var te *TargetsError
	if c.TargetsKey != "" && errors.As(err, &te) {
		te.Key = c.TargetsKey
	}
	return err
}

// Adapter is one injected low-rank pair: the layer computes
// x·W + Scale·(x·A)·B, A [in,r] random, B [r,out] zero at start.
type Adapter struct {
	Weight string // the adapted (frozen) weight
	Module string // its module (the weight's name without ".weight")
	A, B   string // adapter initializers
	Scale  float64
	// WeightTransposed: W is stored [out,in] (Gemm transB=1), so the merge
	// adds (A·B)ᵀ.
	WeightTransposed bool
}

// AddLoRA injects adapters into m (an inference model, before specialization)
// on the linear layers the targets select: float 2-D weights read only as
// the second input of MatMul or Gemm (with transA=0). A weight shared by
// several such nodes shares one adapter, so merging stays exact. Adapters
// are named after their module: model.layers.0.self_attn.q_proj.lora_A.
func AddLoRA(m *onnxpb.ModelProto, cfg LoRA) ([]Adapter, error) {
	if cfg.Rank <= 0 {
		return nil, fmt.Errorf("lora: rank %d must be positive", cfg.Rank)
	}
	if math.IsNaN(cfg.Alpha) || math.IsInf(cfg.Alpha, 0) || cfg.Alpha < 0 {
		return nil, fmt.Errorf("lora: alpha %v: want a finite value > 0 (0: the rank)", cfg.Alpha)
	}
	if err := ValidatePatterns(cfg.Targets); err != nil {
		return nil, fmt.Errorf("lora targets: %w", err)
	}
	if cfg.Alpha == 0 {
		cfg.Alpha = float64(cfg.Rank)
	}
	g := m.GetGraph()
	if g == nil {
		return nil, fmt.Errorf("lora: model has no graph")
	}
	ls := findLinear(g)
	chosen, _, err := ResolveLoRATargets(ls.modules, ls.others, ls.head, cfg.Targets)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", cfg.keyed(err))
	}
	uses := ls.uses
	target := map[string]bool{}
	for _, w := range chosen {
		target[w] = true
	}
	e := newEditor(g)
	e.prefix = "lora/"
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x10a))
	var adapters []Adapter
	for _, t := range g.Initializer {
		name := t.GetName()
		if !target[name] {
			continue
		}
		tb := uses[name][0].transB
		mod := ls.modules[name]
		in, out := t.GetDims()[0], t.GetDims()[1]
		if tb {
			in, out = out, in
		}
		r := int64(cfg.Rank)
		if r > min(in, out) {
			return nil, fmt.Errorf("lora: rank %d exceeds weight %q of shape %v: want rank in [1, %d] (an adapter of higher rank adds nothing)", r, name, t.GetDims(), min(in, out))
		}
		bound := 1 / math.Sqrt(float64(in)) // PEFT's kaiming-uniform(a=√5) bound
		av := make([]float64, in*r)
		for i := range av {
			av[i] = (2*rng.Float64() - 1) * bound
		}
		ad := Adapter{Weight: name, Module: mod, Scale: cfg.Alpha / float64(cfg.Rank), WeightTransposed: tb}
		ad.A = e.init(mod+".lora_A", typedTensor(t.GetDataType(), []int64{in, r}, av))
		ad.B = e.init(mod+".lora_B", typedTensor(t.GetDataType(), []int64{r, out}, make([]float64, r*out)))
		scale := e.init(mod+".lora_scale", typedTensor(t.GetDataType(), nil, []float64{ad.Scale}))
		for _, u := range uses[name] {
			x := u.n.Input[0]
			y := u.n.Output[0]
			base := e.fresh(y + ".base")
			u.n.Output[0] = base
			d := e.op("MatMul", []string{e.op("MatMul", []string{x, ad.A}), ad.B})
			k := scale
			if u.n.GetOpType() == "Gemm" {
				if a := float64(ir.AttrFloatOf(u.n, "alpha", 1)); a != 1 {
					k = e.op("Mul", []string{scale, e.init("lora/alpha", typedTensor(t.GetDataType(), nil, []float64{a}))})
				}
			}
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: e.fresh("lora/add"), OpType: "Add",
				Input: []string{base, e.op("Mul", []string{d, k})}, Output: []string{y}})
		}
		adapters = append(adapters, ad)
	}
	if len(adapters) == 0 {
		return nil, fmt.Errorf("lora: the model has no linear layer to adapt (a 2-D weight read as the second input of MatMul or Gemm)")
	}
	if err := topoSort(g); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	return adapters, nil
}

// linearLayers are a graph's adaptable weights.
type linearLayers struct {
	uses    map[string][]weightUse // weight → its MatMul/Gemm nodes
	modules map[string]string      // weight → module
	others  []string               // every other float weight
	head    string                 // the module whose output is the logits
}

type weightUse struct {
	n      *onnxpb.NodeProto
	transB bool
}

// findLinear lists the float 2-D initializers read only as the second
// input of MatMul or Gemm (transA=0, one transB for all uses).
func findLinear(g *onnxpb.GraphProto) linearLayers {
	inits := map[string]*onnxpb.TensorProto{}
	for _, t := range g.Initializer {
		inits[t.GetName()] = t
	}
	ls := linearLayers{uses: map[string][]weightUse{}, modules: map[string]string{}}
	bad := map[string]bool{}
	for _, n := range g.Node {
		for i, in := range nodeInputs(n) {
			if inits[in] == nil {
				continue
			}
			isMM := n.GetOpType() == "MatMul" && i == 1 && (n.GetDomain() == "" || n.GetDomain() == "ai.onnx")
			isGemm := n.GetOpType() == "Gemm" && i == 1 && ir.AttrIntOf(n, "transA", 0) == 0
			if !isMM && !isGemm {
				bad[in] = true
				continue
			}
			ls.uses[in] = append(ls.uses[in], weightUse{n, isGemm && ir.AttrIntOf(n, "transB", 0) == 1})
		}
	}
	for _, vi := range g.Output {
		bad[vi.GetName()] = true
	}
	for _, t := range g.Initializer {
		name := t.GetName()
		us := ls.uses[name]
		ok := !bad[name] && len(us) > 0 && len(t.GetDims()) == 2 && (t.GetDataType() == ir.Float || t.GetDataType() == ir.Double)
		for _, u := range us {
			ok = ok && u.transB == us[0].transB
		}
		if !ok {
			if isFloat(t.GetDataType()) && ir.NumElements(t.GetDims()) > 1 {
				ls.others = append(ls.others, name)
			}
			continue
		}
		mod := adapterModule(name)
		ls.modules[name] = mod
		for _, u := range us {
			if u.n.Output[0] == "logits" || mod == "lm_head" {
				ls.head = mod
			}
		}
	}
	return ls
}

// Select reports what each of c's target patterns selects in m (see
// ResolveLoRATargets), or the error AddLoRA would give, naming c.TargetsKey.
func (c LoRA) Select(m *onnxpb.ModelProto) ([]PatternMatch, error) {
	ls := findLinear(m.GetGraph())
	_, matches, err := ResolveLoRATargets(ls.modules, ls.others, ls.head, c.Targets)
	return matches, c.keyed(err)
}

// adapterModule is a weight's module: its name without ".weight"; weights
// named otherwise (an exporter's onnx::MatMul_7) are their own module.
func adapterModule(weight string) string {
	if m, ok := strings.CutSuffix(weight, ".weight"); ok {
		return m
	}
	return weight
}

func typedTensor(dt ir.DataType, dims []int64, v []float64) *onnxpb.TensorProto {
	if dt == ir.Double {
		return ir.Tensor("", dims, v)
	}
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return ir.Tensor("", dims, f)
}

// AdapterParams lists the adapters' A and B names (the weights to train).
func AdapterParams(ads []Adapter) []string {
	var out []string
	for _, a := range ads {
		out = append(out, a.A, a.B)
	}
	return out
}

// Merge returns W + Scale·A·B (transposed for [out,in] weights), computed in
// float64 and rounded once.
func (a Adapter) Merge(w []float32, wShape []int64, av, bv []float32) ([]float32, error) {
	res := append([]float32(nil), w...)
	if err := a.MergeInPlace(res, wShape, av, bv); err != nil {
		return nil, err
	}
	return res, nil
}

// MergeInPlace is Merge into w itself (each value is read once, then
// written), for exports that must not hold a second copy.
func (a Adapter) MergeInPlace(w []float32, wShape []int64, av, bv []float32) error {
	if len(wShape) != 2 {
		return fmt.Errorf("lora merge %s: weight shape %v is not 2-D", a.Weight, wShape)
	}
	in, out := wShape[0], wShape[1]
	if a.WeightTransposed {
		in, out = out, in
	}
	if int64(len(w)) != in*out || len(av) == 0 || int64(len(av))%in != 0 {
		return fmt.Errorf("lora merge %s: sizes do not match (W %v, A %d, B %d)", a.Weight, wShape, len(av), len(bv))
	}
	r := int64(len(av)) / in
	if int64(len(bv)) != r*out {
		return fmt.Errorf("lora merge %s: B has %d values, want %d", a.Weight, len(bv), r*out)
	}
	for i := int64(0); i < in; i++ {
		for j := int64(0); j < out; j++ {
			s := 0.0
			for k := int64(0); k < r; k++ {
				s += float64(av[i*r+k]) * float64(bv[k*out+j])
			}
			idx := i*out + j
			if a.WeightTransposed {
				idx = j*in + i
			}
			w[idx] = float32(float64(w[idx]) + a.Scale*s)
		}
	}
	return nil
}
