package lm

import (
	"fmt"
	"math"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// The decode head is a small second session run on each step's last-position
// logits [B,V]. It does the per-token work that is linear in the vocabulary
// — the row max for greedy, the softmax with temperature, the log-softmax
// for log-probs — in ORT's vectorized kernels instead of scalar Go: with a
// real tokenizer's vocabulary (Qwen3: 151,669) that work cost 2-10x the
// model's own step when done in Go.
const (
	headLogits  = "logits"
	headInvTemp = "inv_temperature"
	headMax     = "row_max"
	headProbs   = "probs"
	headLogP    = "log_probs"
	headSum     = "probs_sum"
	headBlocks  = "probs_block_sums"
)

// headKind is which outputs a head computes.
type headKind struct {
	sample   bool // probs = softmax(logits · inv_temperature) and their block (or row) sums; else the row max
	tempered bool // sampling at a temperature other than 1
	logProbs bool // log-softmax of the raw logits (read from probs when sampling untempered)
	// perRow takes one inverse temperature per row ([batch,1]) and adds the
	// row max, so greedy and sampled rows (each at its own temperature)
	// share one run: the continuous batcher's mix of requests. It implies
	// sample and tempered.
	perRow bool
}

// rawLogProbs reports whether the head outputs the log-softmax: greedy and
// tempered sampling need it; untempered sampling reads log(probs), which is
// the same distribution, one vocabulary pass cheaper.
func (k headKind) rawLogProbs() bool { return k.logProbs && (!k.sample || k.tempered) }

// rowMax reports whether the head outputs the row max: greedy picks the
// argmax from it; a sampled draw does not need it.
func (k headKind) rowMax() bool { return !k.sample || k.perRow }

// head is one compiled decode head with its output buffers. Its session has
// no thread pool of its own: a second pool would spin (or sleep and wake)
// beside the model's, and on a machine with as many cores as threads the
// two pools' threads took turns instead of working (two threads kept ~1.5
// cores busy). Instead the batch rows are split over par goroutines, each
// running the head on its rows (an ORT session takes concurrent runs).
type head struct {
	headOut
	sess *ort.Session
	par  int // goroutines the rows are split over
	// slots in run order
	inLogits, inTemp int
	outMax, outProbs int
	outLogP, outSum  int
	outBlocks        int
	parts            []headPart
	invTemp          []float32
	invTempT         *ort.Tensor[float32]
	label            string
	vocab            int
}

// headOut is what a decode head computed for a batch's rows, [B] or [B,V]
// each: the separate head session's outputs, or the model's own when the
// head is in its graph (headgraph.go). Slices a kind does not compute are
// stale or empty.
type headOut struct {
	kind headKind
	// mx is the row max (rowMax), mxw floats a row: the maxima of the
	// vocabulary's blocks when it has blocks (blockLen), so greedy scans one
	// block for the argmax instead of half the row, else the row's one max.
	mx    []float32
	mxw   int
	probs []float32 // softmax(logits · inv_temperature) (sample)
	// blocks are probs summed in blocks of blockLen(V) when V has blocks,
	// sums their row sums when it has none (sample; the other is empty).
	blocks, sums []float32
	logp         []float32 // log-softmax of the raw logits (rawLogProbs)
}

// blockRow is row r's block sums of probs, or nil when the head did not
// compute them.
func (h *headOut) blockRow(r, V int) []float32 {
	if len(h.blocks) == 0 {
		return nil
	}
	n := blockCount(V)
	return h.blocks[r*n : (r+1)*n]
}

// rowSum is the sum of row r's probs, which the draw scales its uniform
// number by and log-probs divide by: the sum of its block sums (a few
// hundred floats, in float64), or the head's row sum when V has no blocks.
// It is 1 only up to rounding, and the draw and the log-probs use the same
// value.
func (h *headOut) rowSum(r, V int) float64 {
	bs := h.blockRow(r, V)
	if bs == nil {
		return float64(h.sums[r])
	}
	var s float64
	for _, x := range bs {
		s += float64(x)
	}
	return s
}

// finite reports whether row r's logits gave a usable distribution: a
// finite row max, or a finite positive softmax sum. NaN or infinite logits
// (broken weights, an uninitialised cache) would otherwise still pick some
// token, and generation would go on writing garbage.
func (h *headOut) finite(r, V int) bool {
	if h.kind.rowMax() {
		if mx := h.rowMax(r); math.IsNaN(float64(mx)) || math.IsInf(float64(mx), 0) {
			return false
		}
	}
	if h.kind.sample {
		s := h.rowSum(r, V)
		if math.IsNaN(s) || math.IsInf(s, 0) || s <= 0 {
			return false
		}
	}
	return true
}

// rowMax is row r's max: the largest of its block maxima (a max is exact,
// so this is the row's ReduceMax), NaN when any block's is NaN.
func (h *headOut) rowMax(r int) float32 {
	bm := h.mx[r*h.mxw : (r+1)*h.mxw]
	mx := bm[0]
	for _, x := range bm {
		if x != x {
			return x
		}
		mx = max(mx, x)
	}
	return mx
}

// argmax returns the first position of row r's largest logit (row is its
// logits): from the first block holding the row max, scanning only it.
func (h *headOut) argmax(r int, row []float32) int {
	bm := h.mx[r*h.mxw : (r+1)*h.mxw]
	mx := h.rowMax(r)
	if len(bm) == 1 || mx != mx {
		return argmaxAt(row, mx)
	}
	blk := len(row) / len(bm)
	for j, x := range bm {
		if x == mx {
			return j*blk + argmaxAt(row[j*blk:(j+1)*blk], mx)
		}
	}
	return argmaxAt(row, mx) // not reached: mx is one of bm
}

// maxWidth is the number of row-max values a head computes per row for a
// vocabulary of V: one per block when V has blocks, else 1.
func maxWidth(V int) int { return max(1, blockCount(V)) }

// errNonFinite is the error for a row whose logits are not finite.
func errNonFinite(label string, row, step int) error {
	return fmt.Errorf("generate with %s: the logits of sequence %d at token %d are not finite (NaN or ±Inf): the model's weights or inputs are broken (check the model file, or train it again from a good checkpoint)", label, row, step)
}

// headPart is one goroutine's run arguments.
type headPart struct {
	in, out []ort.Value
	err     error
}

func buildHead(k headKind, vocab int) (*onnxpb.ModelProto, error) {
	g := ir.NewGraph("tagpr_decode_head")
	g.Input(headLogits, ir.Float, "batch", vocab)
	if k.sample {
		x := headLogits
		switch {
		case k.perRow:
			g.Input(headInvTemp, ir.Float, "batch", 1)
			x = g.Op("Mul", []string{headLogits, headInvTemp})
		case k.tempered:
			g.Input(headInvTemp, ir.Float, 1)
			x = g.Op("Mul", []string{headLogits, headInvTemp})
		}
		g.Node("Softmax", []string{x}, []string{headProbs}, ir.AttrInt("axis", -1))
		addProbSums(g, headProbs, headSum, headBlocks, 2, vocab)
		g.Output(headProbs, ir.Float, "batch", vocab)
		if blk := blockLen(vocab); blk > 0 {
			g.Output(headBlocks, ir.Float, "batch", vocab/blk)
		} else {
			g.Output(headSum, ir.Float, "batch", 1)
		}
	}
	if k.rowMax() {
		addRowMax(g, headLogits, headMax, 2, vocab)
		g.Output(headMax, ir.Float, "batch", maxWidth(vocab))
	}
	if k.rawLogProbs() {
		addLogSoftmax(g, headLogits, headLogP)
		g.Output(headLogP, ir.Float, "batch", vocab)
	}
	return ir.NewModel(g, 0)
}

// The head's ops, over the last axis of x: the separate head session and
// the head in the model's graph (headgraph.go) emit the same ones, so their
// outputs are the same bit for bit (TestGraphHeadMatchesSeparateHead).

// addProbSums adds, when V has blocks (blockLen), the sums of probs (rank
// dims, the last V wide) over consecutive blocks of the last axis (a
// reshape, no copy), for the draw to walk (blockdraw.go), and otherwise
// the row sums. The draw's row sum is then the sum of the block sums, added
// in Go (headOut.rowSum): one ReduceSum over the row less, a pass over the
// probabilities that cost ~0.1-0.3 ms a step at batch 8 and 151k tokens.
func addProbSums(g *ir.Graph, probs, sum, blocks string, rank, V int) {
	blk := blockLen(V)
	if blk == 0 {
		g.Node("ReduceSum", []string{probs, lastAxis(g)}, []string{sum}, ir.AttrInt("keepdims", 1))
		return
	}
	g.Node("ReduceSum", []string{g.Op("Reshape", []string{probs, blockShape(g, rank, V)}), lastAxis(g)}, []string{blocks}, ir.AttrInt("keepdims", 0))
}

// addRowMax adds the maxima of x (rank dims, the last V wide) over the
// blocks of the last axis when V has blocks (blockLen; a reshape, no copy),
// else the row max. ReduceMax runs vectorized and threaded, ~5x faster
// than ArgMax in ORT 1.30; Go then finds the first position holding the
// max, in the first block holding it (headOut.argmax): a few hundred floats
// a row instead of half of 151k (the Go side of a greedy step at batch 8
// fell from 0.13 to under 0.02 ms).
func addRowMax(g *ir.Graph, x, out string, rank, V int) {
	blk := blockLen(V)
	if blk == 0 {
		g.Node("ReduceMax", []string{x, lastAxis(g)}, []string{out}, ir.AttrInt("keepdims", 1))
		return
	}
	g.Node("ReduceMax", []string{g.Op("Reshape", []string{x, blockShape(g, rank, V)}), lastAxis(g)}, []string{out}, ir.AttrInt("keepdims", 0))
}

// blockShape adds the constant shape that views x (rank dims, the last V
// wide) as blocks of blockLen(V): [0,…,V/blk,blk], zeros keeping the
// leading dims.
func blockShape(g *ir.Graph, rank, V int) string {
	blk := blockLen(V)
	dims := make([]int64, rank+1)
	dims[rank-1], dims[rank] = int64(V/blk), int64(blk)
	return g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""},
		Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", dims...))}}).Output[0]
}

// addLogSoftmax adds the log-softmax of x. LogSoftmax runs vectorized;
// ReduceLogSumExp is ~7x slower in ORT 1.30 and sums less accurately.
func addLogSoftmax(g *ir.Graph, x, out string) {
	g.Node("LogSoftmax", []string{x}, []string{out}, ir.AttrInt("axis", -1))
}

// lastAxis adds the constant [-1] (the axes of a reduction).
func lastAxis(g *ir.Graph) string {
	return g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{""},
		Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", int64(-1)))}}).Output[0]
}

// headFor returns the model's head of that kind, building it on first use.
func (m *Model) headFor(k headKind) (*head, error) {
	if h := m.heads[k]; h != nil {
		return h, nil
	}
	pm, err := buildHead(k, m.Layout.Vocab)
	if err != nil {
		return nil, fmt.Errorf("decode head for %s: %w", m.label, err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		return nil, fmt.Errorf("decode head for %s: %w", m.label, err)
	}
	label := m.label + " decode head"
	so := m.sessOpts
	so.IntraOpThreads, so.InterOpThreads = 1, 1
	so = so.DefaultSpinning(false)
	sess, err := ort.NewSession(b, label, so)
	if err != nil {
		return nil, err
	}
	h := &head{headOut: headOut{kind: k}, sess: sess, label: label, vocab: m.Layout.Vocab, par: threadsOf(m.sessOpts),
		inTemp: -1, outMax: -1, outProbs: -1, outLogP: -1, outSum: -1, outBlocks: -1}
	h.parts = make([]headPart, h.par)
	for i := range h.parts {
		h.parts[i] = headPart{in: make([]ort.Value, len(sess.Inputs())), out: make([]ort.Value, len(sess.Outputs()))}
	}
	for i, v := range sess.Inputs() {
		switch v.Name {
		case headLogits:
			h.inLogits = i
		case headInvTemp:
			h.inTemp = i
		}
	}
	for i, v := range sess.Outputs() {
		switch v.Name {
		case headMax:
			h.outMax = i
		case headProbs:
			h.outProbs = i
		case headLogP:
			h.outLogP = i
		case headSum:
			h.outSum = i
		case headBlocks:
			h.outBlocks = i
		}
	}
	if h.inTemp >= 0 && !k.perRow {
		h.invTemp = []float32{1}
		if h.invTempT, err = ort.NewTensor([]int64{1}, h.invTemp); err != nil {
			sess.Destroy()
			return nil, fmt.Errorf("%s: %w", label, err)
		}
		for i := range h.parts {
			h.parts[i].in[h.inTemp] = h.invTempT
		}
	}
	if m.heads == nil {
		m.heads = map[headKind]*head{}
	}
	m.heads[k] = h
	return h, nil
}

// run computes the head over rows [B,V] of logits (a contiguous buffer) at
// one inverse temperature.
func (h *head) run(logits []float32, B int, invTemp float32) error {
	if h.inTemp >= 0 && !h.kind.perRow {
		h.invTemp[0] = invTemp
	}
	return h.runSplit(logits, B, nil)
}

// runRows is run for a perRow head: invTemp holds each row's inverse
// temperature (1 for greedy rows, whose token comes from the row max).
func (h *head) runRows(logits []float32, B int, invTemp []float32) error {
	return h.runSplit(logits, B, invTemp[:B])
}

// runSplit sizes the output buffers for B rows and runs the head on the
// rows split over h.par goroutines.
func (h *head) runSplit(logits []float32, B int, rowTemp []float32) error {
	V := h.vocab
	if h.outMax >= 0 {
		h.mxw = maxWidth(V)
		h.mx = grow(h.mx, B*h.mxw)
	}
	if h.outProbs >= 0 {
		h.probs = grow(h.probs, B*V)
	}
	if h.outSum >= 0 {
		h.sums = grow(h.sums, B)
	}
	if h.outBlocks >= 0 {
		h.blocks = grow(h.blocks, B*blockCount(h.vocab))
	}
	if h.outLogP >= 0 {
		h.logp = grow(h.logp, B*V)
	}
	splitRows(B, h.par, func(k, lo, hi int) {
		h.parts[k].err = h.runPart(&h.parts[k], logits, lo, hi, rowTemp)
	})
	for k := range h.parts {
		if err := h.parts[k].err; err != nil {
			h.parts[k].err = nil
			return err
		}
	}
	return nil
}

// runPart runs the head on rows [lo,hi): its tensors view those rows of
// the shared buffers.
func (h *head) runPart(p *headPart, logits []float32, lo, hi int, rowTemp []float32) error {
	V, n := h.vocab, int64(hi-lo)
	var made []ort.Value
	defer func() {
		for _, v := range made {
			v.Destroy()
		}
	}()
	bind := func(slots []ort.Value, slot int, shape []int64, data []float32) error {
		if slot < 0 {
			return nil
		}
		v, err := ort.NewTensor(shape, data)
		if err != nil {
			return fmt.Errorf("%s: %w", h.label, err)
		}
		made = append(made, v)
		slots[slot] = v
		return nil
	}
	rows, cols := []int64{n, int64(V)}, []int64{n, 1}
	if err := bind(p.in, h.inLogits, rows, logits[lo*V:hi*V]); err != nil {
		return err
	}
	if rowTemp != nil {
		if err := bind(p.in, h.inTemp, cols, rowTemp[lo:hi]); err != nil {
			return err
		}
	}
	for _, o := range []struct {
		slot  int
		shape []int64
		data  []float32
	}{{h.outMax, []int64{n, int64(h.mxw)}, h.mx}, {h.outProbs, rows, h.probs}, {h.outSum, cols, h.sums}, {h.outLogP, rows, h.logp},
		{h.outBlocks, []int64{n, int64(blockCount(h.vocab))}, h.blocks}} {
		if o.slot < 0 {
			continue
		}
		w := int(o.shape[1])
		if err := bind(p.out, o.slot, o.shape, o.data[lo*w:hi*w]); err != nil {
			return err
		}
	}
	return h.sess.RunOrdered(p.in, p.out)
}

// blockCount is the number of blocks a row of V splits into (blockLen),
// 0 when V has none.
func blockCount(V int) int {
	if blk := blockLen(V); blk > 0 {
		return V / blk
	}
	return 0
}

func (h *head) close() {
	if h.invTempT != nil {
		h.invTempT.Destroy()
	}
	h.sess.Destroy()
}

// argmaxAt returns the first position of row holding mx (the row's max as
// the head computed it), scanning only as far as that position.
func argmaxAt(row []float32, mx float32) int {
	for i, v := range row {
		if v == mx {
			return i
		}
	}
	// Not found only when the row holds NaN; take the first of the largest
	// non-NaN values.
	best := 0
	for i, v := range row {
		if v > row[best] || row[best] != row[best] {
			best = i
		}
	}
	return best
}
