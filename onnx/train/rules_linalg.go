package train

import (
	"fmt"
	"slices"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

func swapLast(rank int) []int64 {
	p := make([]int64, rank)
	for i := range p {
		p[i] = int64(i)
	}
	p[rank-1], p[rank-2] = p[rank-2], p[rank-1]
	return p
}

func init() {
	rules["MatMul"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		a, b := n.Input[0], n.Input[1]
		sa, sb, so := c.shape(a), c.shape(b), c.shape(n.Output[0])
		g := gy[0]
		// Lift 1-D operands to matrices, as MatMul itself does.
		sa2, sb2, so2 := sa, sb, so
		A, B := a, b
		switch {
		case len(sa) == 1 && len(sb) == 1:
			so2 = []int64{1, 1}
		case len(sa) == 1:
			so2 = append(append(append([]int64{}, so[:len(so)-1]...), 1), so[len(so)-1])
		case len(sb) == 1:
			so2 = append(append([]int64{}, so...), 1)
		}
		if len(sa) == 1 {
			sa2 = []int64{1, sa[0]}
			A = c.reshape(a, sa2)
		}
		if len(sb) == 1 {
			sb2 = []int64{sb[0], 1}
			B = c.reshape(b, sb2)
		}
		if len(sa) == 1 || len(sb) == 1 {
			g = c.reshape(g, so2)
		}
		K := sa2[len(sa2)-1]
		N := sb2[len(sb2)-1]
		out := []string{"", ""}
		if need[0] {
			var ga string
			if len(sb2) == 2 {
				// [.., M, N]·[K, N]ᵀ as one 2-D Gemm over the flattened rows.
				g2 := c.reshape(g, []int64{-1, N})
				ga = c.op("Gemm", []string{g2, B}, ir.AttrInt("transB", 1))
				rows := append(append([]int64{}, so2[:len(so2)-1]...), K)
				ga = c.unbroadcast(c.reshape(ga, rows), rows, sa2)
			} else {
				ga = c.op("MatMul", []string{g, c.transpose(B, swapLast(len(sb2)))})
				full := append(append([]int64{}, so2[:len(so2)-1]...), K)
				ga = c.unbroadcast(ga, full, sa2)
			}
			out[0] = c.reshape(ga, sa)
			if slices.Equal(sa, sa2) {
				out[0] = ga
			}
		}
		if need[1] {
			var gb string
			batchA := 1
			for _, d := range sa2[:len(sa2)-2] {
				batchA *= int(d)
			}
			if len(sb2) == 2 {
				// Σ over every row: Aᵀ·G with A and G flattened to 2-D.
				a2 := c.reshape(A, []int64{-1, K})
				g2 := c.reshape(g, []int64{-1, N})
				if len(sa2) > 2 && !slices.Equal(sa2[:len(sa2)-2], so2[:len(so2)-2]) {
					a2 = c.reshape(c.op("Expand", []string{A, c.e.ints(append(append([]int64{}, so2[:len(so2)-2]...), sa2[len(sa2)-2:]...)...)}), []int64{-1, K})
				}
				gb = c.op("Gemm", []string{a2, g2}, ir.AttrInt("transA", 1))
			} else {
				gb = c.op("MatMul", []string{c.transpose(A, swapLast(len(sa2))), g})
				full := append(append([]int64{}, so2[:len(so2)-2]...), K, N)
				gb = c.unbroadcast(gb, full, sb2)
			}
			out[1] = gb
			if !slices.Equal(sb, sb2) {
				out[1] = c.reshape(gb, sb)
			}
		}
		return out, nil
	}
	rules["Gemm"] = func(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
		a, b, cc := n.Input[0], n.Input[1], input(n, 2)
		alpha := ir.AttrFloatOf(n, "alpha", 1)
		beta := float64(ir.AttrFloatOf(n, "beta", 1))
		ta, tb := ir.AttrIntOf(n, "transA", 0), ir.AttrIntOf(n, "transB", 0)
		g := gy[0]
		out := []string{"", "", ""}
		al := ir.AttrFloat("alpha", alpha)
		if need[0] {
			if ta == 0 {
				out[0] = c.op("Gemm", []string{g, b}, al, ir.AttrInt("transB", 1-tb))
			} else {
				out[0] = c.op("Gemm", []string{b, g}, al, ir.AttrInt("transA", tb), ir.AttrInt("transB", 1))
			}
		}
		if need[1] {
			if tb == 0 {
				out[1] = c.op("Gemm", []string{a, g}, al, ir.AttrInt("transA", 1-ta))
			} else {
				out[1] = c.op("Gemm", []string{g, a}, al, ir.AttrInt("transA", 1), ir.AttrInt("transB", ta))
			}
		}
		if cc != "" && need[2] {
			gc := g
			if beta != 1 {
				gc = c.mul(g, c.scalar(c.elem(cc), beta))
			}
			out[2] = c.unbroadcast(gc, c.shape(n.Output[0]), c.shape(cc))
		}
		return out, nil
	}
	rules["Einsum"] = einsumGrad
}

// einsumGrad differentiates explicit-output equations without repeated
// letters in one operand: the gradient of operand i is the einsum of the
// output gradient with the other operands, into operand i's subscripts.
func einsumGrad(c *gctx, n *onnxpb.NodeProto, gy []string, need []bool) ([]string, error) {
	eq := ir.AttrStringOf(n, "equation", "")
	terms, outTerm, err := parseEinsum(eq, n, c)
	if err != nil {
		return nil, err
	}
	res := make([]string, len(n.Input))
	for i := range n.Input {
		if !need[i] {
			continue
		}
		seen := map[rune]bool{}
		for _, r := range terms[i] {
			if seen[r] {
				return nil, fmt.Errorf("einsum %q: repeated subscript %q in operand %d is not supported", eq, r, i)
			}
			seen[r] = true
		}
		avail := map[rune]bool{}
		for _, r := range outTerm {
			avail[r] = true
		}
		ins := []string{gy[0]}
		subs := []string{outTerm}
		for j := range n.Input {
			if j == i {
				continue
			}
			ins = append(ins, n.Input[j])
			subs = append(subs, terms[j])
			for _, r := range terms[j] {
				avail[r] = true
			}
		}
		for _, r := range terms[i] {
			if !avail[r] {
				return nil, fmt.Errorf("einsum %q: subscript %q appears only in operand %d (summed away); not supported", eq, r, i)
			}
		}
		geq := ""
		for k, s := range subs {
			if k > 0 {
				geq += ","
			}
			geq += s
		}
		geq += "->" + terms[i]
		res[i] = c.op("Einsum", ins, ir.AttrString("equation", geq))
	}
	return res, nil
}

// parseEinsum splits an equation into operand and output subscripts, with
// "..." replaced by upper-case letters sized from the operands' ranks.
func parseEinsum(eq string, n *onnxpb.NodeProto, c *gctx) ([]string, string, error) {
	clean := ""
	for _, r := range eq {
		if r != ' ' {
			clean += string(r)
		}
	}
	lhs, out, explicit := clean, "", false
	for i := 0; i+1 < len(clean); i++ {
		if clean[i:i+2] == "->" {
			lhs, out, explicit = clean[:i], clean[i+2:], true
		}
	}
	var terms []string
	start := 0
	for i := 0; i <= len(lhs); i++ {
		if i == len(lhs) || lhs[i] == ',' {
			terms = append(terms, lhs[start:i])
			start = i + 1
		}
	}
	if len(terms) != len(n.Input) {
		return nil, "", fmt.Errorf("einsum %q: %d operands in the equation, %d inputs", eq, len(terms), len(n.Input))
	}
	ell := 0
	for i, t := range terms {
		letters := 0
		hasEll := false
		for j := 0; j < len(t); j++ {
			if j+2 < len(t)+0 && t[j:j+3] == "..." {
				hasEll = true
				j += 2
				continue
			}
			letters++
		}
		if hasEll {
			if k := len(c.shape(n.Input[i])) - letters; k > ell {
				ell = k
			}
		}
	}
	ellLetters := ""
	for k := 0; k < ell; k++ {
		ellLetters += string(rune('Z' - k))
	}
	expand := func(t string, rank int) string {
		letters := 0
		for j := 0; j < len(t); j++ {
			if j+2 < len(t) && t[j:j+3] == "..." {
				j += 2
				continue
			}
			letters++
		}
		k := rank - letters
		if k < 0 {
			k = 0
		}
		r := ""
		for j := 0; j < len(t); j++ {
			if j+2 < len(t) && t[j:j+3] == "..." {
				r += ellLetters[ell-k:]
				j += 2
				continue
			}
			r += string(t[j])
		}
		return r
	}
	for i := range terms {
		terms[i] = expand(terms[i], len(c.shape(n.Input[i])))
	}
	if !explicit {
		count := map[rune]int{}
		for _, t := range terms {
			for _, r := range t {
				count[r]++
			}
		}
		out = ellLetters
		for r := 'a'; r <= 'z'; r++ {
			if count[r] == 1 {
				out += string(r)
			}
		}
		for r := 'A'; r <= 'Z'; r++ {
			if count[r] == 1 && !containsRune(ellLetters, r) {
				out += string(r)
			}
		}
	} else {
		out = expand(out, len(c.shape(n.Output[0])))
	}
	return terms, out, nil
}

func containsRune(s string, r rune) bool {
	for _, x := range s {
		if x == r {
			return true
		}
	}
	return false
}
