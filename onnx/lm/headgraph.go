package lm

import (
	"fmt"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// The decode head in the model's own graph. Run as a second session (head.go)
// the head's vocabulary-wide work had its own thread pool beside the model's,
// and the two took turns on the cores. Load appends it to the graphs it
// edits, so a decode step is one session run on one pool. Each part is
// behind an If on a bool input, since ORT runs every node of a graph
// whatever a run fetches and only an If keeps prefill, Forward and the
// other kinds' steps from paying for it; off, a branch yields [B,K,0] and
// costs nothing measurable:
//
//   - the row max of the logits (HeadRowMaxOn: greedy rows need it, a plain
//     sampled step does not);
//   - the softmax of logits · inv_temperature and its block sums, or its
//     row sums when V has no blocks (HeadSample; the Mul behind a nested If
//     on HeadTempered);
//   - the log-softmax of the raw logits (HeadLogSoftmax).
//
// The ops are those of the separate head (Softmax, addProbSums, addRowMax,
// addLogSoftmax), so the outputs are the same bit for bit
// (TestGraphHeadMatchesSeparateHead).
const (
	HeadSample     = "tagpr_head_sample"          // bool [1]: compute probs and sums
	HeadTempered   = "tagpr_head_tempered"        // bool [1]: probs of logits · inv_temperature (else of the logits)
	HeadLogSoftmax = "tagpr_head_log_softmax"     // bool [1]: compute log_probs
	HeadInvTemp    = "tagpr_head_inv_temperature" // float [batch,1,1]: per row
	HeadRowMaxOn   = "tagpr_head_row_max_on"      // bool [1]: compute the row max
	HeadRowMax     = "tagpr_row_max"              // float [batch,K,V/blockLen(V)] (block maxima) or [batch,K,1] when V has no blocks, [batch,K,0] when off
	HeadProbs      = "tagpr_probs"                // float [batch,K,V], or [batch,K,0]
	HeadLogProbs   = "tagpr_log_probs"            // float [batch,K,V], or [batch,K,0]
	// HeadBlockSums are the probs summed in blocks of blockLen(V), for the
	// draw (blockdraw.go), whose row sum is their sum; graphs whose V has no
	// blocks output HeadProbsSum, the row sums, instead.
	HeadBlockSums = "tagpr_probs_block_sums" // float [batch,K,V/blockLen(V)], or [batch,K,0]
	HeadProbsSum  = "tagpr_probs_sum"        // float [batch,K,1], or [batch,K,0]
)

// headInputs are what addDecodeHead adds, in that order; headOutputs are
// the outputs it always adds, then one of HeadBlockSums and HeadProbsSum.
var (
	headInputs  = []string{HeadSample, HeadTempered, HeadLogSoftmax, HeadInvTemp, HeadRowMaxOn}
	headOutputs = []string{HeadRowMax, HeadProbs, HeadLogProbs}
)

// editForGeneration applies Load's graph edits (logits_to_keep, the decode
// head) and reports whether it changed anything.
func editForGeneration(pm *onnxpb.ModelProto) bool {
	kept := addLogitsToKeep(pm)
	return addDecodeHead(pm) || kept
}

// addDecodeHead appends the decode head to a graph whose logits output is
// float32 [B,K,V]; it reports whether it did.
func addDecodeHead(pm *onnxpb.ModelProto) bool {
	gp := pm.GetGraph()
	if gp == nil || hasInput(gp, HeadSample) {
		return false
	}
	lo, elem, ok := logitsOutput(gp)
	if !ok || elem != ir.Float {
		return false
	}
	_, dims, _, _ := ir.ShapeOf(lo)
	V := max(int(dims[2]), 0) // -1 when symbolic
	g := ir.WrapGraph(gp)
	g.Input(HeadSample, ir.Bool, 1)
	g.Input(HeadTempered, ir.Bool, 1)
	g.Input(HeadLogSoftmax, ir.Bool, 1)
	g.Input(HeadInvTemp, ir.Float, "batch", 1, 1)
	g.Input(HeadRowMaxOn, ir.Bool, 1)

	// empty yields [B,K,0] in a branch that is off.
	empty := func(sub *ir.Graph, name string) {
		c := func(v int64) string {
			return sub.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""},
				Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", v))}}).Output[0]
		}
		sub.Node("Slice", []string{Logits, c(0), c(0), c(-1)}, []string{name})
		sub.Output(name, ir.Float, "batch", "keep", "head_width")
	}
	ifOn := func(input string, outs []string, on, off *ir.Graph) {
		cond := g.Op("Squeeze", []string{input})
		g.Node("If", []string{cond}, outs, ir.AttrGraph("then_branch", on.Proto), ir.AttrGraph("else_branch", off.Proto))
		for _, o := range outs {
			g.Output(o, ir.Float, "batch", "keep", "head_width")
		}
	}

	// The row max (greedy).
	mxOn := g.Subgraph("tagpr_head_row_max_on")
	mx := mxOn.Unique("tagpr_head_mx")
	addRowMax(mxOn, Logits, mx, 3, V) // V 0 (symbolic): the row max
	mxOn.Output(mx, ir.Float, "batch", "keep", maxWidth(V))
	mxOff := g.Subgraph("tagpr_head_row_max_off")
	empty(mxOff, mxOff.Unique("tagpr_head_no_mx"))
	ifOn(HeadRowMaxOn, []string{HeadRowMax}, mxOn, mxOff)

	// Sampling: probs of the logits, tempered or not, and their block sums
	// (or row sums).
	raw := g.Subgraph("tagpr_head_raw")
	rawP := raw.Op("Softmax", []string{Logits}, ir.AttrInt("axis", -1))
	raw.Output(rawP, ir.Float, "batch", "keep", "vocab")
	tempered := g.Subgraph("tagpr_head_tempered")
	tempP := tempered.Op("Softmax", []string{tempered.Op("Mul", []string{Logits, HeadInvTemp})}, ir.AttrInt("axis", -1))
	tempered.Output(tempP, ir.Float, "batch", "keep", "vocab")
	sampleOn := g.Subgraph("tagpr_head_sample_on")
	probs := sampleOn.Unique("tagpr_head_probs")
	sampleOn.Node("If", []string{sampleOn.Op("Squeeze", []string{HeadTempered})}, []string{probs},
		ir.AttrGraph("then_branch", tempered.Proto), ir.AttrGraph("else_branch", raw.Proto))
	sum, blocks := sampleOn.Unique("tagpr_head_sum"), sampleOn.Unique("tagpr_head_block_sums")
	addProbSums(sampleOn, probs, sum, blocks, 3, V) // V 0 (symbolic): no blocks
	sampleOn.Output(probs, ir.Float, "batch", "keep", "vocab")
	sampleOff := g.Subgraph("tagpr_head_sample_off")
	empty(sampleOff, sampleOff.Unique("tagpr_head_no_probs"))
	sampleOuts := []string{HeadProbs}
	if blockLen(V) > 0 {
		sampleOn.Output(blocks, ir.Float, "batch", "keep", blockCount(V))
		empty(sampleOff, sampleOff.Unique("tagpr_head_no_block_sums"))
		sampleOuts = append(sampleOuts, HeadBlockSums)
	} else {
		sampleOn.Output(sum, ir.Float, "batch", "keep", 1)
		empty(sampleOff, sampleOff.Unique("tagpr_head_no_sum"))
		sampleOuts = append(sampleOuts, HeadProbsSum)
	}
	ifOn(HeadSample, sampleOuts, sampleOn, sampleOff)

	// Log-probs of the raw logits.
	lsOn := g.Subgraph("tagpr_head_log_softmax_on")
	lp := lsOn.Unique("tagpr_head_logp")
	addLogSoftmax(lsOn, Logits, lp)
	lsOn.Output(lp, ir.Float, "batch", "keep", "vocab")
	lsOff := g.Subgraph("tagpr_head_log_softmax_off")
	empty(lsOff, lsOff.Unique("tagpr_head_no_logp"))
	ifOn(HeadLogSoftmax, []string{HeadLogProbs}, lsOn, lsOff)
	return g.Err() == nil
}

// graphHeadReq is what the in-graph head computes on a gen's next runs.
type graphHeadReq struct {
	kind   headKind
	inv    float32   // inverse temperature of every row
	rowInv []float32 // or one per row (perRow kinds), at least the batch's rows
}

// invAt is row r's inverse temperature.
func (q *graphHeadReq) invAt(r int) float32 {
	if q.rowInv != nil {
		return q.rowInv[r]
	}
	return q.inv
}

// headBufs are the in-graph head's input and output buffers.
type headBufs struct {
	invT                  []float32
	mx, probs, sums, logp []float32
	blocks                []float32
	mxw                   int // row-max values a row (headOut.mxw)
}

// bindHead feeds the in-graph head's inputs for a run of B rows keeping K
// logits columns and points its outputs at the workspace's buffers; the
// tensors it makes are appended to made. The head computes what g.head asks
// for (nil: the row max alone), and g.headRan records whether its outputs
// are this run's.
func (g *gen) bindHead(B, K int, made *[]ort.Value) error {
	s := &g.m.slot.head
	g.headRan = false
	if s.sample < 0 {
		return nil
	}
	var k headKind
	if g.head != nil {
		k = g.head.kind
	}
	hb := &g.ws.head
	hb.invT = grow(hb.invT, B)
	for r := range hb.invT {
		hb.invT[r] = 1
		if g.head != nil {
			hb.invT[r] = g.head.invAt(r)
		}
	}
	width := func(on bool, w int) int {
		if on {
			return w
		}
		return 0
	}
	sample, logSM, rowMax := k.sample, k.rawLogProbs(), k.rowMax()
	V := g.V
	// The graph has block maxima (and block sums) when it was built with V
	// known and V has blocks.
	hb.mxw = 1
	if s.blocks >= 0 {
		hb.mxw = maxWidth(V)
	}
	hb.mx = grow(hb.mx, B*K*width(rowMax, hb.mxw))
	hb.probs = grow(hb.probs, B*K*width(sample, V))
	hb.sums = grow(hb.sums, B*K*width(sample && s.sums >= 0, 1))
	hb.logp = grow(hb.logp, B*K*width(logSM, V))
	nblk := 0
	if s.blocks >= 0 {
		nblk = width(sample, blockCount(V))
	}
	hb.blocks = grow(hb.blocks, B*K*nblk)
	b, kk := int64(B), int64(K)
	for _, v := range []struct {
		slot int
		in   bool
		mk   func() (ort.Value, error)
	}{
		{s.sample, true, func() (ort.Value, error) { return ort.NewTensor([]int64{1}, []bool{sample}) }},
		{s.tempered, true, func() (ort.Value, error) { return ort.NewTensor([]int64{1}, []bool{k.tempered}) }},
		{s.logSoftmax, true, func() (ort.Value, error) { return ort.NewTensor([]int64{1}, []bool{logSM}) }},
		{s.invT, true, func() (ort.Value, error) { return ort.NewTensor([]int64{b, 1, 1}, hb.invT) }},
		{s.rowMaxOn, true, func() (ort.Value, error) { return ort.NewTensor([]int64{1}, []bool{rowMax}) }},
		{s.rowMax, false, func() (ort.Value, error) { return ort.NewTensor([]int64{b, kk, int64(width(rowMax, hb.mxw))}, hb.mx) }},
		{s.probs, false, func() (ort.Value, error) { return ort.NewTensor([]int64{b, kk, int64(width(sample, V))}, hb.probs) }},
		{s.sums, false, func() (ort.Value, error) { return ort.NewTensor([]int64{b, kk, int64(width(sample, 1))}, hb.sums) }},
		{s.logp, false, func() (ort.Value, error) { return ort.NewTensor([]int64{b, kk, int64(width(logSM, V))}, hb.logp) }},
		{s.blocks, false, func() (ort.Value, error) { return ort.NewTensor([]int64{b, kk, int64(nblk)}, hb.blocks) }},
	} {
		if v.slot < 0 {
			continue // block sums or row sums, whichever this graph lacks
		}
		t, err := v.mk()
		if err != nil {
			return fmt.Errorf("generate with %s: decode head: %w", g.m.label, err)
		}
		*made = append(*made, t)
		if v.in {
			g.in[v.slot] = t
		} else {
			g.out[v.slot] = t
		}
	}
	g.headRan = g.head != nil && K == 1
	return nil
}

// headSlots are the in-graph head's positions in the session's run order
// (-1 when the graph has no head).
type headSlots struct {
	sample, tempered, logSoftmax, invT, rowMaxOn int
	rowMax, probs, logp                          int
	sums, blocks                                 int // one of them -1: the graph has the other
}

func headSlotsOf(in, out map[string]int) headSlots {
	s := headSlots{-1, -1, -1, -1, -1, -1, -1, -1, -1, -1}
	if _, ok := in[HeadSample]; !ok {
		return s
	}
	at := func(name string) int {
		if i, ok := out[name]; ok {
			return i
		}
		return -1
	}
	return headSlots{in[HeadSample], in[HeadTempered], in[HeadLogSoftmax], in[HeadInvTemp], in[HeadRowMaxOn],
		out[HeadRowMax], out[HeadProbs], out[HeadLogProbs], at(HeadProbsSum), at(HeadBlockSums)}
}

// lastHead returns the decode head's outputs for the B rows of the last
// run (one logits column each, last): the model's own when that run
// computed them, else the separate head session's run on last, timed into
// headTime.
func (m *Model) lastHead(g *gen, q graphHeadReq, last []float32, B int, headTime *time.Duration) (*headOut, error) {
	if g.headRan {
		hb := &g.ws.head
		return &headOut{kind: q.kind, mx: hb.mx, mxw: hb.mxw, probs: hb.probs, sums: hb.sums, logp: hb.logp, blocks: hb.blocks}, nil
	}
	h, err := m.headFor(q.kind)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	if q.kind.perRow {
		err = h.runRows(last, B, q.rowInv)
	} else {
		err = h.run(last, B, q.inv)
	}
	*headTime += time.Since(t0)
	return &h.headOut, err
}
