package train

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// MemoryEstimate is a training step's expected peak resident memory, by
// part, in bytes; EstimateMemory makes it from a training graph before any
// session exists.
type MemoryEstimate struct {
	// Weights: the trainable and frozen weights Go feeds (the trainer's
	// copies and the graph's initial values), and the graph's own
	// initializers (inside the ORT session).
	Weights int64
	// Gradients: one buffer per trainable weight.
	Gradients int64
	// Optimizer: AdamW's two moments per trainable weight.
	Optimizer int64
	// Activations: the forward values the backward pass reads, all live
	// when the backward pass starts.
	Activations int64
	// Transient: the largest working set on top of the activations — the
	// chunked head's per-chunk logits and its accumulated weight gradient,
	// or the biggest backward values.
	Transient int64
	// Runtime: ONNX Runtime and the Go runtime themselves.
	Runtime int64
	// Generation: an RL run's rollouts, their KV cache and decode buffers
	// (lm.GenerationMemory); 0 for supervised training.
	Generation int64
	// Reference: an RL run's frozen KL reference model, its weights and
	// forward working set; 0 without one.
	Reference int64
}

// RuntimeBaseline is ORT's and Go's own resident memory with a session open.
const RuntimeBaseline = 200 << 20

// Total is the estimated peak.
func (e MemoryEstimate) Total() int64 {
	return e.Weights + e.Gradients + e.Optimizer + e.Activations + e.Transient + e.Runtime + e.Generation + e.Reference
}

// String lists the parts and the total, e.g. for a log line before a run.
func (e MemoryEstimate) String() string {
	s := fmt.Sprintf("weights %s, gradients %s, optimizer %s, activations %s, transient %s, runtime %s",
		FormatBytes(e.Weights), FormatBytes(e.Gradients), FormatBytes(e.Optimizer), FormatBytes(e.Activations),
		FormatBytes(e.Transient), FormatBytes(e.Runtime))
	// The RL parts only where there are any: supervised runs log as before.
	if e.Generation > 0 {
		s += ", generation " + FormatBytes(e.Generation)
	}
	if e.Reference > 0 {
		s += ", reference " + FormatBytes(e.Reference)
	}
	return s + ": total " + FormatBytes(e.Total())
}

// FormatBytes writes a byte count in binary units (e.g. "1.4 GiB").
func FormatBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.0f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.0f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// EstimateMemory estimates the peak memory of training steps on tg with a
// Trainer (AdamW): the weights, their gradients and moments, the forward
// activations the backward pass keeps, and the largest temporaries.
func EstimateMemory(tg *TrainingGraph) MemoryEstimate {
	var e MemoryEstimate
	size := func(t ValueType) int64 { return ir.NumElements(t.Shape) * int64(max(ir.ElemSize(t.Elem), 0)) }
	for _, p := range tg.Params {
		n := size(tg.Types[p])
		if n == 0 && tg.Initial[p] != nil {
			n = initBytes(tg.Initial[p])
		}
		// The trainer's slice, and the graph's initial value unless
		// NewTrainer lets go of it.
		e.Weights += n
		if !tg.ReleaseInitial {
			e.Weights += n
		}
		e.Gradients += n
		e.Optimizer += 2 * n
	}
	for _, f := range tg.Frozen {
		e.Weights += initBytes(tg.Initial[f]) // the trainer reads the graph's copy (ir.Float32View)
	}
	g := tg.Model.Graph
	for _, t := range g.Initializer {
		e.Weights += initBytes(t)
	}
	// Forward values read by the backward pass: live together at its start.
	fwd := map[string]bool{}
	for _, n := range g.Node {
		if !isGradNode(n) {
			for _, o := range n.Output {
				fwd[o] = true
			}
		}
	}
	// Recomputed values (LMTraining.Recompute) live one segment at a time:
	// their total over the segments (one gate each) is a segment's share.
	recomputed := map[string]bool{}
	var recomputedBytes, segments int64
	for _, n := range g.Node {
		if strings.HasPrefix(n.GetName(), recomputePrefix) {
			for _, o := range n.Output {
				recomputed[o] = true
				recomputedBytes += size(tg.Types[o])
			}
			if n.GetOpType() == "Where" && strings.HasPrefix(n.GetName(), recomputePrefix+"gate/") {
				segments++
			}
		}
	}
	kept := map[string]bool{}
	var biggest int64
	for _, n := range g.Node {
		if !isGradNode(n) {
			continue
		}
		for _, in := range n.Input {
			if fwd[in] && !kept[in] && !recomputed[in] {
				kept[in] = true
				e.Activations += size(tg.Types[in])
			}
		}
		for _, o := range n.Output {
			biggest = max(biggest, size(tg.Types[o]))
		}
	}
	if segments > 0 {
		e.Transient += recomputedBytes / segments
	}
	// Outside the backward pass: the forward's own largest values (an
	// operator's input and output both live).
	for v := range fwd {
		if !kept[v] && !recomputed[v] {
			biggest = max(biggest, size(tg.Types[v]))
		}
	}
	e.Transient += 3*biggest + chunkedHeadBytes(g, tg.Types)
	e.Runtime = RuntimeBaseline
	return e
}

// isGradNode reports the backward pass's nodes (named by Differentiate).
func isGradNode(n *onnxpb.NodeProto) bool { return strings.HasPrefix(n.GetName(), "grad/") }

func initBytes(t *onnxpb.TensorProto) int64 {
	if t == nil {
		return 0
	}
	return ir.NumElements(t.GetDims()) * int64(max(ir.ElemSize(t.GetDataType()), 0))
}

// chunkedHeadBytes is the working set of the chunked heads' Scans: per
// chunk its logits, their exponentials and gradient ([C,V] each), and the
// weight gradient accumulated over chunks (two buffers, ping-pong).
func chunkedHeadBytes(g *onnxpb.GraphProto, types map[string]ValueType) int64 {
	heads, err := fusedHeads(g)
	if err != nil {
		return 0
	}
	var total int64
	for n, f := range heads {
		if len(n.Input) < 2 {
			continue
		}
		states := len(n.Input) - int(ir.AttrIntOf(n, "num_scan_inputs", 0))
		h := types[n.Input[states]].Shape // [K, C, D]
		w := types[f.Weight]
		if len(h) != 3 || len(w.Shape) != 2 {
			continue
		}
		es := int64(max(ir.ElemSize(w.Elem), 0))
		vocab := w.Shape[1]
		if w.Shape[0] != h[2] { // E [V,D], read transposed
			vocab = w.Shape[0]
		}
		total += 3 * h[1] * vocab * es
		if f.GradWeight != "" {
			total += 2 * ir.NumElements(w.Shape) * es
		}
	}
	return total
}

// ModelBytes sums the raw data of m's initializers: what a model held in
// memory beside a run adds to its estimate.
func ModelBytes(m *onnxpb.ModelProto) int64 {
	var n int64
	for _, t := range m.GetGraph().GetInitializer() {
		n += int64(len(t.GetRawData()))
	}
	return n
}

// SharedBytes is the raw bytes of m's initializers that tg holds too, the
// same tensors rather than copies (a graph derived from m through
// ir.CloneSharingInitializers): memory the two count once.
func (tg *TrainingGraph) SharedBytes(m *onnxpb.ModelProto) int64 {
	held := map[*onnxpb.TensorProto]bool{}
	for _, t := range tg.Initial {
		held[t] = true
	}
	for _, t := range tg.Model.GetGraph().GetInitializer() {
		held[t] = true
	}
	var n int64
	for _, t := range m.GetGraph().GetInitializer() {
		if held[t] {
			n += int64(len(t.GetRawData()))
		}
	}
	return n
}

// MachineMemory is the memory this process may grow to: what the machine
// has free now (MemAvailable, page cache it can drop included) plus what this
// process already holds, within its cgroup's limit when one is set
// (containers). Not MemTotal: with other jobs holding memory a run that fit
// MemTotal paged the machine to a halt (a 0.5B RL step estimated at 21.3 GiB
// on a 23.5 GiB machine with 8 GiB in use elsewhere) instead of being refused.
func MachineMemory() (int64, error) {
	var cgroup int64
	for _, p := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		if b, err := os.ReadFile(p); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < 1<<50 {
				cgroup = n
				break
			}
		}
	}
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		if cgroup > 0 {
			return cgroup, nil
		}
		return 0, fmt.Errorf("machine memory: %w", err)
	}
	return memoryFor(b, cgroup, selfRSS())
}

// memoryFor is MachineMemory from /proc/meminfo's text, a cgroup limit (0:
// none) and this process's resident bytes.
func memoryFor(meminfo []byte, cgroup, rss int64) (int64, error) {
	kb := map[string]int64{}
	for _, line := range strings.Split(string(meminfo), "\n") {
		k, v, ok := strings.Cut(line, ":")
		f := strings.Fields(v)
		if !ok || len(f) != 2 || f[1] != "kB" {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			kb[k] = n << 10
		}
	}
	total, ok := kb["MemTotal"]
	if !ok {
		if cgroup > 0 {
			return cgroup, nil
		}
		return 0, fmt.Errorf("machine memory: no MemTotal in /proc/meminfo")
	}
	have := total
	if avail, ok := kb["MemAvailable"]; ok { // Linux ≥ 3.14
		have = min(total, avail+rss)
	}
	if cgroup > 0 {
		have = min(have, cgroup)
	}
	return have, nil
}

// selfRSS is this process's resident memory in bytes (0 when unknown).
func selfRSS() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// MemoryKnobs name, as the caller's user sets them, what reduces each part
// of an estimate ("" leaves a hint out), e.g. {Batch: "--batch", SeqLen:
// "--seq-len", LoRA: "--lora-rank"}; Reference names what drops an RL
// run's reference model (e.g. "beta 0").
type MemoryKnobs struct{ Batch, SeqLen, LoRA, Reference string }

// MemoryLimit turns a --max-memory-gb style setting into bytes: 0 the
// memory free for this process (MachineMemory), a negative value no check
// (ok false).
func MemoryLimit(gb float64) (limit int64, ok bool, err error) {
	switch {
	case gb < 0:
		return 0, false, nil
	case gb == 0:
		limit, err = MachineMemory()
		return limit, err == nil, err
	}
	return int64(gb * (1 << 30)), true, nil
}

// MemoryError is Fits' refusal: the estimate, the limit, and what to
// reduce, the largest reducible part first.
type MemoryError struct {
	Estimate MemoryEstimate
	Limit    int64
	Hints    []string
}

func (e *MemoryError) Error() string {
	msg := fmt.Sprintf("estimated peak memory %s exceeds the %s this machine allows (%s)", FormatBytes(e.Estimate.Total()), FormatBytes(e.Limit), e.Estimate)
	if len(e.Hints) > 0 {
		msg += ": " + strings.Join(e.Hints, ", or ")
	}
	return msg
}

// Fits returns nil when the estimate is within limit bytes, else a
// *MemoryError naming both and what to reduce.
func (e MemoryEstimate) Fits(limit int64, k MemoryKnobs) error {
	if e.Total() <= limit {
		return nil
	}
	type part struct {
		bytes int64
		hint  string
	}
	var parts []part
	var act []string
	for _, s := range []string{k.Batch, k.SeqLen} {
		if s != "" {
			act = append(act, s)
		}
	}
	if len(act) > 0 {
		what, n := "activations and temporaries", e.Activations+e.Transient
		if e.Generation > 0 {
			what, n = "activations, temporaries and rollouts", n+e.Generation
		}
		parts = append(parts, part{n, fmt.Sprintf("reduce %s (%s: %s, in proportion)", strings.Join(act, " or "), what, FormatBytes(n))})
	}
	if k.Reference != "" && e.Reference > 0 {
		parts = append(parts, part{e.Reference, fmt.Sprintf("set %s to drop the KL reference model (%s)", k.Reference, FormatBytes(e.Reference))})
	}
	if k.LoRA != "" && e.Optimizer > 0 {
		parts = append(parts, part{e.Gradients + e.Optimizer, fmt.Sprintf("train low-rank adapters with %s instead of every weight (gradients and AdamW moments: %s)", k.LoRA, FormatBytes(e.Gradients+e.Optimizer))})
	}
	sort.Slice(parts, func(i, j int) bool { return parts[i].bytes > parts[j].bytes })
	me := &MemoryError{Estimate: e, Limit: limit}
	for _, p := range parts {
		me.Hints = append(me.Hints, p.hint)
	}
	return me
}
