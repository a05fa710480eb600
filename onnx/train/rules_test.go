package train

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
)

// One finite-difference check per gradient rule, float64, shapes with broadcasts.
var opChecks = map[string]func(b *opBench) string{
	"Add": func(b *opBench) string { return b.op("Add", []string{b.param(-1, 1, 2, 3, 4), b.param(-1, 1, 3, 1)}) },
	"Sub": func(b *opBench) string { return b.op("Sub", []string{b.param(-1, 1, 4), b.param(-1, 1, 2, 3, 1)}) },
	"Mul": func(b *opBench) string { return b.op("Mul", []string{b.param(-1, 1, 2, 1, 4), b.param(-1, 1, 3, 1)}) },
	"Div": func(b *opBench) string { return b.op("Div", []string{b.param(-1, 1, 2, 3), b.param(0.5, 2, 3)}) },
	"Neg": func(b *opBench) string { return b.op("Neg", []string{b.param(-1, 1, 3, 2)}) },
	"Pow": func(b *opBench) string {
		return b.op("Pow", []string{b.param(0.5, 2, 2, 3), b.param(0.5, 2, 3)})
	},
	"PowConst": func(b *opBench) string {
		return b.op("Pow", []string{b.param(0.5, 2, 2, 3), b.scalarD(3)})
	},
	"Sqrt":       func(b *opBench) string { return b.op("Sqrt", []string{b.param(0.5, 2, 2, 3)}) },
	"Reciprocal": func(b *opBench) string { return b.op("Reciprocal", []string{b.param(0.5, 2, 2, 3)}) },
	"Exp":        func(b *opBench) string { return b.op("Exp", []string{b.param(-1, 1, 2, 3)}) },
	"Log":        func(b *opBench) string { return b.op("Log", []string{b.param(0.5, 2, 2, 3)}) },
	"Tanh":       func(b *opBench) string { return b.op("Tanh", []string{b.param(-2, 2, 2, 3)}) },
	"Sigmoid":    func(b *opBench) string { return b.op("Sigmoid", []string{b.param(-2, 2, 2, 3)}) },
	"Erf":        func(b *opBench) string { return b.op("Erf", []string{b.param(-2.5, 2.5, 3, 4)}) },
	"Relu": func(b *opBench) string {
		return b.op("Relu", []string{b.param(-2, 2, 3, 4)})
	},
	"Abs": func(b *opBench) string { return b.op("Abs", []string{b.param(-2, 2, 3, 4)}) },
	"Sin": func(b *opBench) string { return b.op("Sin", []string{b.param(-2, 2, 3, 4)}) },
	"Cos": func(b *opBench) string { return b.op("Cos", []string{b.param(-2, 2, 3, 4)}) },
	"Where": func(b *opBench) string {
		c := b.op("Greater", []string{b.constant(-1, 1, 3, 1), b.scalarD(0)})
		return b.op("Where", []string{c, b.param(-1, 1, 3, 4), b.param(-1, 1, 4)})
	},
	"Softmax": func(b *opBench) string {
		return b.op("Softmax", []string{b.param(-2, 2, 2, 3, 5)}, ir.AttrInt("axis", 1))
	},
	"LogSoftmax": func(b *opBench) string {
		return b.op("LogSoftmax", []string{b.param(-2, 2, 2, 3, 5)})
	},
	"MatMul": func(b *opBench) string {
		return b.op("MatMul", []string{b.param(-1, 1, 2, 3, 4), b.param(-1, 1, 4, 5)})
	},
	"MatMulBatched": func(b *opBench) string {
		return b.op("MatMul", []string{b.param(-1, 1, 2, 1, 3, 4), b.param(-1, 1, 3, 4, 2)})
	},
	"MatMulVector": func(b *opBench) string {
		return b.op("MatMul", []string{b.param(-1, 1, 4), b.param(-1, 1, 2, 4, 3)})
	},
	"MatMulMatVec": func(b *opBench) string {
		return b.op("MatMul", []string{b.param(-1, 1, 2, 3, 4), b.param(-1, 1, 4)})
	},
	"Gemm": func(b *opBench) string {
		return b.op("Gemm", []string{b.param(-1, 1, 4, 3), b.param(-1, 1, 5, 4), b.param(-1, 1, 5)},
			ir.AttrInt("transA", 1), ir.AttrInt("transB", 1), ir.AttrFloat("alpha", 0.7), ir.AttrFloat("beta", 1.3))
	},
	"GemmPlain": func(b *opBench) string {
		return b.op("Gemm", []string{b.param(-1, 1, 3, 4), b.param(-1, 1, 4, 5), b.param(-1, 1, 3, 1)})
	},
	"LayerNormalization": func(b *opBench) string {
		return b.op("LayerNormalization", []string{b.param(-2, 2, 2, 3, 6), b.param(0.5, 1.5, 6), b.param(-1, 1, 6)},
			ir.AttrInt("axis", -1), ir.AttrFloat("epsilon", 1e-5))
	},
	"LayerNormalization2Axes": func(b *opBench) string {
		return b.op("LayerNormalization", []string{b.param(-2, 2, 2, 3, 4), b.param(0.5, 1.5, 3, 4)},
			ir.AttrInt("axis", 1))
	},
	"RMSNormalization": func(b *opBench) string {
		b.opset = 23
		return b.op("RMSNormalization", []string{b.param(-2, 2, 2, 3, 6), b.param(0.5, 1.5, 6)},
			ir.AttrInt("axis", -1), ir.AttrFloat("epsilon", 1e-6))
	},
	"RMSNormDecomposed": func(b *opBench) string {
		x := b.param(-2, 2, 2, 3, 6)
		ms := b.op("ReduceMean", []string{b.op("Pow", []string{x, b.scalarD(2)}), b.ints(-1)})
		r := b.op("Sqrt", []string{b.op("Add", []string{ms, b.scalarD(1e-6)})})
		return b.op("Mul", []string{b.param(0.5, 1.5, 6), b.op("Div", []string{x, r})})
	},
	"ReduceSum": func(b *opBench) string {
		return b.op("ReduceSum", []string{b.param(-1, 1, 2, 3, 4), b.ints(0, 2)}, ir.AttrInt("keepdims", 0))
	},
	"ReduceMean": func(b *opBench) string {
		return b.op("ReduceMean", []string{b.param(-1, 1, 2, 3, 4), b.ints(1)})
	},
	"ReduceMax": func(b *opBench) string {
		return b.op("ReduceMax", []string{b.param(-1, 1, 2, 3, 4), b.ints(-1)}, ir.AttrInt("keepdims", 0))
	},
	"Gather": func(b *opBench) string {
		return b.op("Gather", []string{b.param(-1, 1, 5, 3), b.intTensor([]int64{2, 3}, []int64{0, 4, 4, 1, -1, 2})})
	},
	"GatherAxis1": func(b *opBench) string {
		return b.op("Gather", []string{b.param(-1, 1, 2, 5, 3), b.intTensor([]int64{4}, []int64{1, 1, 3, 0})}, ir.AttrInt("axis", 1))
	},
	"GatherScalar": func(b *opBench) string {
		return b.op("Gather", []string{b.param(-1, 1, 2, 5, 3), b.g.Initializer("gs", ir.Scalar("", int64(3)))}, ir.AttrInt("axis", 1))
	},
	"GatherElements": func(b *opBench) string {
		return b.op("GatherElements", []string{b.param(-1, 1, 3, 4), b.intTensor([]int64{3, 2}, []int64{0, 3, 3, 3, 1, 0})}, ir.AttrInt("axis", 1))
	},
	"Reshape": func(b *opBench) string {
		return b.op("Reshape", []string{b.param(-1, 1, 2, 3, 4), b.ints(6, -1)})
	},
	"Transpose": func(b *opBench) string {
		return b.op("Transpose", []string{b.param(-1, 1, 2, 3, 4)}, ir.AttrInts("perm", 1, 2, 0))
	},
	"Squeeze": func(b *opBench) string {
		return b.op("Squeeze", []string{b.param(-1, 1, 2, 1, 4), b.ints(1)})
	},
	"Unsqueeze": func(b *opBench) string {
		return b.op("Unsqueeze", []string{b.param(-1, 1, 2, 4), b.ints(0, 2)})
	},
	"Flatten": func(b *opBench) string {
		return b.op("Flatten", []string{b.param(-1, 1, 2, 3, 4)}, ir.AttrInt("axis", 2))
	},
	"Concat": func(b *opBench) string {
		return b.op("Concat", []string{b.param(-1, 1, 2, 3), b.constant(-1, 1, 2, 1), b.param(-1, 1, 2, 2)}, ir.AttrInt("axis", 1))
	},
	"Split": func(b *opBench) string {
		outs := b.g.Node("Split", []string{b.param(-1, 1, 2, 6), b.ints(1, 2, 3)}, []string{"", "", ""}, ir.AttrInt("axis", 1))
		// only two of the three parts reach the loss
		return b.op("Mul", []string{outs[0], b.op("ReduceSum", []string{outs[2], b.ints(1)})})
	},
	"Slice": func(b *opBench) string {
		return b.op("Slice", []string{b.param(-1, 1, 4, 6), b.ints(1, -5), b.ints(3, 100), b.ints(0, 1)})
	},
	"SliceStep": func(b *opBench) string {
		return b.op("Slice", []string{b.param(-1, 1, 4, 7), b.ints(-1, 0), b.ints(-100, 7), b.ints(0, 1), b.ints(-2, 3)})
	},
	"Expand": func(b *opBench) string {
		return b.op("Expand", []string{b.param(-1, 1, 3, 1), b.ints(2, 3, 4)})
	},
	"Cast": func(b *opBench) string {
		c := b.op("Cast", []string{b.param(-1, 1, 2, 3)}, ir.AttrInt("to", int64(ir.Double)))
		return b.op("Mul", []string{c, c})
	},
	"Identity": func(b *opBench) string { return b.op("Identity", []string{b.param(-1, 1, 2, 3)}) },
	"Dropout":  func(b *opBench) string { return b.op("Dropout", []string{b.param(-1, 1, 2, 3)}) },
	"DropoutEval": func(b *opBench) string {
		return b.op("Dropout", []string{b.param(-1, 1, 2, 3), b.scalarD(0.1), b.g.Initializer("tm", ir.Scalar("", false))})
	},
	"Einsum": func(b *opBench) string {
		return b.op("Einsum", []string{b.param(-1, 1, 2, 3, 4), b.param(-1, 1, 4, 5)}, ir.AttrString("equation", "bij,jk->bik"))
	},
	"EinsumEllipsis": func(b *opBench) string {
		return b.op("Einsum", []string{b.param(-1, 1, 2, 3, 4), b.param(-1, 1, 2, 5, 4)}, ir.AttrString("equation", "...ij,...kj->...ik"))
	},
	"EinsumImplicit": func(b *opBench) string {
		return b.op("Einsum", []string{b.param(-1, 1, 3, 4), b.param(-1, 1, 4, 2)}, ir.AttrString("equation", "ij,jk"))
	},
	"GatherAxis1Matrix": func(b *opBench) string {
		return b.op("Gather", []string{b.param(-1, 1, 2, 5, 3), b.intTensor([]int64{2, 3}, []int64{0, 4, 4, 1, 3, 2})}, ir.AttrInt("axis", 1))
	},
	"MatMulDot": func(b *opBench) string {
		return b.op("Unsqueeze", []string{b.op("MatMul", []string{b.param(-1, 1, 4), b.param(-1, 1, 4)}), b.ints(0)})
	},
	"MulScalarWeight": func(b *opBench) string {
		// A rank-0 weight (a learned scale) and a [1] one (a bias).
		return b.op("Add", []string{b.op("Mul", []string{b.param(-1, 1, 2, 3), b.param(0.5, 2)}), b.param(-1, 1, 1)})
	},
	"Tile": func(b *opBench) string { return b.op("Tile", []string{b.param(-1, 1, 2, 3), b.ints(2, 2)}) },
	"Max":  func(b *opBench) string { return b.op("Max", []string{b.param(-1, 1, 2, 3), b.param(-1, 1, 3)}) },
	"Min":  func(b *opBench) string { return b.op("Min", []string{b.param(-1, 1, 2, 3), b.param(-1, 1, 3)}) },
	"Trilu": func(b *opBench) string {
		return b.op("Trilu", []string{b.param(-1, 1, 2, 4, 4)}, ir.AttrInt("upper", 0))
	},
	"CumSum": func(b *opBench) string {
		return b.op("CumSum", []string{b.param(-1, 1, 2, 5), b.g.Initializer("ax", ir.Scalar("", int64(1)))})
	},
	"Gelu": func(b *opBench) string { b.opset = 20; return b.op("Gelu", []string{b.param(-3, 3, 3, 4)}) },
	"GeluTanh": func(b *opBench) string {
		b.opset = 20
		return b.op("Gelu", []string{b.param(-3, 3, 3, 4)}, ir.AttrString("approximate", "tanh"))
	},
	"Softplus": func(b *opBench) string { return b.op("Softplus", []string{b.param(-3, 3, 3, 4)}) },
	"LeakyRelu": func(b *opBench) string {
		return b.op("LeakyRelu", []string{b.param(-2, 2, 3, 4)}, ir.AttrFloat("alpha", 0.1))
	},
	"ReduceMin": func(b *opBench) string {
		return b.op("ReduceMin", []string{b.param(-1, 1, 2, 3, 4), b.ints(0)}, ir.AttrInt("keepdims", 1))
	},
	"ReduceL2": func(b *opBench) string {
		return b.op("ReduceL2", []string{b.param(-1, 1, 2, 3, 4), b.ints(-1)})
	},
	"ReduceLogSumExp": func(b *opBench) string {
		return b.op("ReduceLogSumExp", []string{b.param(-1, 1, 2, 3, 4), b.ints(1)}, ir.AttrInt("keepdims", 0))
	},
	"GatherND": func(b *opBench) string {
		return b.op("GatherND", []string{b.param(-1, 1, 3, 4, 2), b.intTensor([]int64{3, 2}, []int64{0, 1, 2, 3, 0, 1})})
	},
	"GatherNDNegativeFull": func(b *opBench) string { // every dim indexed, negative indices, repeats
		return b.op("GatherND", []string{b.param(-1, 1, 3, 4), b.intTensor([]int64{2, 2, 2}, []int64{-1, 0, 2, -4, 0, 1, 0, 1})})
	},
	"Mean": func(b *opBench) string {
		return b.op("Mean", []string{b.param(-1, 1, 2, 3), b.param(-1, 1, 3)})
	},
	"ReduceSumSquare": func(b *opBench) string {
		return b.op("ReduceSumSquare", []string{b.param(-1, 1, 2, 3, 4), b.ints(1, 2)}, ir.AttrInt("keepdims", 0))
	},
	"Clip": func(b *opBench) string {
		return b.op("Clip", []string{b.param(-2, 2, 3, 4), b.scalarD(-1), b.scalarD(1)})
	},
	"Sum": func(b *opBench) string {
		return b.op("Sum", []string{b.param(-1, 1, 2, 3), b.param(-1, 1, 3), b.param(-1, 1, 2, 1)})
	},
	"Pad": func(b *opBench) string {
		return b.op("Pad", []string{b.param(-1, 1, 2, 3), b.ints(0, 1, 1, 2)})
	},
	"DataInputBroadcast": func(b *opBench) string {
		// A weight meets a data input; only the weight trains.
		return b.op("Mul", []string{b.input(-1, 1, 2, 3), b.param(-1, 1, 3)})
	},
}

func TestGradientRules(t *testing.T) {
	for name, build := range opChecks {
		t.Run(name, func(t *testing.T) {
			b := newOpBench(uint64(len(name)))
			y := build(b)
			b.check(t, y)
		})
	}
}

// TestEveryRuleHasACheck: each gradient rule has a finite-difference check
// (a case named after its op, possibly with a suffix).
func TestEveryRuleHasACheck(t *testing.T) {
	for op := range rules {
		found := false
		for name := range opChecks {
			if strings.HasPrefix(name, op) {
				found = true
			}
		}
		if !found {
			t.Errorf("gradient rule %s has no finite-difference check in opChecks", op)
		}
	}
}

func TestUnsupportedOpIsNamed(t *testing.T) {
	b := newOpBench(1)
	y := b.g.Node("ReduceProd", []string{b.param(-1, 1, 2, 3)}, []string{""})[0]
	b.g.Proto.Node[len(b.g.Proto.Node)-1].Name = "my_hardmax"
	l := b.op("ReduceSum", []string{y}, ir.AttrInt("keepdims", 1))
	loss := b.op("Reshape", []string{l, b.ints(1)})
	b.g.Output(loss, ir.Double, 1)
	m := ir.MustModel(b.g, 18)
	sp, err := Specialize(m, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Differentiate(sp, loss, b.params, nil)
	if err == nil || !contains(err.Error(), "ReduceProd") || !contains(err.Error(), "my_hardmax") {
		t.Fatalf("error %v should name the op ReduceProd and the node my_hardmax", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestGradientRulesRandomBroadcasts: binary ops and batched MatMul on
// random shapes whose operands broadcast against each other.
func TestGradientRulesRandomBroadcasts(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 4))
	randShape := func() ([]int64, []int64) {
		rank := 1 + rng.IntN(4)
		a := make([]int64, rank)
		for i := range a {
			a[i] = int64(1 + rng.IntN(4))
		}
		b := append([]int64{}, a[rng.IntN(rank):]...) // drop leading dims
		for i := range b {
			if rng.IntN(3) == 0 {
				b[i] = 1
			}
		}
		if rng.IntN(2) == 0 {
			return b, a
		}
		return a, b
	}
	for trial := 0; trial < 12; trial++ {
		for _, op := range []string{"Add", "Sub", "Mul", "Div", "MatMul"} {
			sa, sb := randShape()
			if op == "MatMul" {
				// [..., M, K] × [..., K, N] with broadcast batch dims.
				M, K, N := int64(1+rng.IntN(3)), int64(1+rng.IntN(3)), int64(1+rng.IntN(3))
				sa = append(append([]int64{}, sa...), M, K)
				sb = append(append([]int64{}, sb...), K, N)
			}
			t.Run(fmt.Sprintf("%s%v%v", op, sa, sb), func(t *testing.T) {
				b := newOpBench(uint64(trial))
				lo := -1.0
				if op == "Div" {
					lo = 0.5
				}
				y := b.op(op, []string{b.param(-1, 1, sa...), b.param(lo, 2, sb...)})
				b.check(t, y)
			})
		}
	}
}
