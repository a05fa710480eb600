package lm

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/ort"
)

// rowSrc is where a row of a new cache layout comes from: row row of g's
// current buffers (the running batch, or a prefill of joining prompts).
type rowSrc struct {
	g   *gen
	row int
}

// relayout rebuilds the running batch's cache with the rows srcs (in the
// order of b.rows, which already holds them) by copying them into the
// buffer set ORT does not hold the past in. Rows are right-aligned at the
// length of the longest: a row's left padding grows when a longer row
// joins and the common padding goes away when the longest leaves, so the
// cache never holds more columns than its longest row. Both buffer sets
// are grown to hold every row at its longest (prompt + max_new_tokens), so
// decode steps never allocate.
func (b *Batcher) relayout(srcs []rowSrc) error {
	run := b.run
	if run.dc != nil {
		return b.relayoutDevice(srcs)
	}
	H, D := run.H, run.D
	for _, p := range run.past {
		if p != nil {
			p.Destroy()
		}
	}
	run.past = nil
	if len(srcs) == 0 {
		run.B, run.P, run.pad = 0, 0, run.pad[:0]
		b.c.rows.Store(0)
		b.c.cachePos.Store(0)
		return nil
	}
	S, bound := 0, 0
	for _, s := range srcs {
		S = max(S, s.g.P-s.g.pad[s.row])
	}
	for _, r := range b.rows {
		bound = max(bound, r.j.bound)
	}
	B := len(srcs)
	need := B * max(bound, S+1) * H * D
	next := 1 - run.cur
	pad := make([]int, B)
	for i := range b.ws.kv[next] {
		dst := grow(b.ws.kv[next][i], need)
		b.ws.kv[next][i] = dst
		for r, s := range srcs {
			Ps, ps := s.g.P, s.g.pad[s.row]
			L := Ps - ps
			src := s.g.ws.kv[s.g.cur][i]
			for h := 0; h < H; h++ {
				d0 := (r*H + h) * S * D
				clear(dst[d0 : d0+(S-L)*D]) // padding: masked, but kept finite
				s0 := ((s.row*H+h)*Ps + ps) * D
				copy(dst[d0+(S-L)*D:d0+S*D], src[s0:s0+L*D])
			}
			pad[r] = S - L
		}
	}
	// The other set receives the next step's present: it only needs room.
	for i := range b.ws.kv[run.cur] {
		b.ws.kv[run.cur][i] = grow(b.ws.kv[run.cur][i], need)
	}
	run.cur, run.B, run.P, run.pad, run.capPos = next, B, S, pad, need/(H*D)
	run.past = make([]*ort.Tensor[float32], len(b.ws.kv[next]))
	for i := range run.past {
		t, err := ort.NewTensor([]int64{int64(B), int64(H), int64(S), int64(D)}, b.ws.kv[next][i][:B*H*S*D])
		if err != nil {
			return fmt.Errorf("generate with %s: %w", b.m.label, err)
		}
		run.past[i] = t
	}
	b.c.rows.Store(int64(B))
	b.c.cachePos.Store(int64(B * S))
	return nil
}
