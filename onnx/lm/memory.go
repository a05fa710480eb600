package lm

import (
	"strings"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
)

// GenerationMemory estimates, in bytes, what generating with m holds beside
// its weights, for a memory estimate before a run (RL rollouts): the KV
// cache of rows sequences at positions tokens, twice (a decode run reads
// the past while it writes the present, one position longer), and the
// decode's vocabulary-wide buffers per row (logits, probabilities,
// log-probabilities, the draw's copy). vocab is used when the graph's logits
// leave it symbolic (0: then the head's buffers are left out).
func GenerationMemory(m *onnxpb.ModelProto, rows, positions int64, vocab int) int64 {
	gp := m.GetGraph()
	var perToken int64
	for _, in := range gp.GetInput() {
		elem, dims, _, ok := ir.ShapeOf(in)
		if !ok || len(dims) != 4 || !strings.HasPrefix(in.GetName(), "past_key_values.") {
			continue
		}
		// [batch, kv_heads, past, head_dim]: the symbolic dims are batch and past.
		perToken += max(dims[1], 0) * max(dims[3], 0) * int64(max(ir.ElemSize(elem), 0))
	}
	if lo, elem, ok := logitsOutput(gp); ok {
		if _, dims, _, _ := ir.ShapeOf(lo); dims[2] > 0 {
			vocab = int(dims[2])
		}
		return 2*rows*positions*perToken + 4*rows*int64(vocab)*int64(max(ir.ElemSize(elem), 0))
	}
	return 2*rows*positions*perToken + 4*rows*int64(vocab)*4
}
