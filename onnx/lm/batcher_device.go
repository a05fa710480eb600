package lm

import (
	"fmt"

	"github.com/tagpr/tagpr/onnx/ort"
)

// The batcher on a device-resident model (CUDA, or LoadOptions.DeviceResident
// on the CPU): the running batch's KV cache and the joining prompts' prefill
// live on the device (devCache), a join or a leave re-lays the rows out by
// copies within the device, and a decode step moves only the ids,
// positions, logits_to_keep and the decode head's values in and the kept
// logits (and the head's per-row outputs) out. The attention mask is
// uploaded once after a re-layout ([rows, positions] int64) and grows on
// the device at every step after it.

// newRun starts the batch's run gen in ws: device-resident when the model is.
func (b *Batcher) newRun(ws *workspace, B int) (*gen, error) {
	if b.m.devs.on {
		return b.m.newDeviceGenIn(ws, B, B)
	}
	return b.m.newGenIn(ws, B, 0, 0)
}

// newPrefill starts the run that prefills n joining prompts of at most
// longest tokens.
func (b *Batcher) newPrefill(n, longest int) (*gen, error) {
	if b.m.devs.on {
		return b.m.newDeviceGenIn(&b.pws, n, n)
	}
	return b.m.newGenIn(&b.pws, n, n, n*longest)
}

// emptyCache drops the running batch's cache (every row left or failed);
// on the device the binding stays for the next rows.
func (b *Batcher) emptyCache() {
	if dc := b.run.dc; dc != nil {
		dc.releasePast()
		dc.mask.Release()
		dc.mask = nil
		return
	}
	b.run.release()
}

// relayoutDevice is relayout on the device: each cache tensor is rebuilt
// as [rows, heads, S, head dim] with every row right-aligned at S, the
// longest row's length, its columns copied within the device from its
// source (the running batch or the prefill). A row's left padding, which
// the mask hides, is filled with copies of its first real column rather
// than zeros (the host writes zeros): any finite value gives the masked
// attention weights of exactly zero, and a copy needs nothing from the
// host.
func (b *Batcher) relayoutDevice(srcs []rowSrc) error {
	run, dc := b.run, b.run.dc
	if len(srcs) == 0 {
		b.emptyCache()
		run.B, run.P, run.pad = 0, 0, run.pad[:0]
		b.c.rows.Store(0)
		b.c.cachePos.Store(0)
		return nil
	}
	S := 0
	for _, s := range srcs {
		if s.g.dc == nil || s.g.dc.past == nil {
			return fmt.Errorf("generate with %s: internal: a joining row's cache is not on the device", b.m.label)
		}
		S = max(S, s.g.P-s.g.pad[s.row])
	}
	B, H, D := len(srcs), run.H, run.D
	shape := []int64{int64(B), int64(H), int64(S), int64(D)}
	next := make([]*ort.DeviceTensor, 2*b.m.Layout.Layers)
	pad := make([]int, B)
	fail := func(err error) error {
		for _, t := range next {
			t.Release()
		}
		return fmt.Errorf("generate with %s: re-lay the cache out: %w", b.m.label, err)
	}
	for i := range next {
		t, err := ort.NewDeviceTensor[float32](b.m.sess, dc.dev, shape)
		if err != nil {
			return fail(err)
		}
		next[i] = t
		for r, s := range srcs {
			Ps, ps := s.g.P, s.g.pad[s.row]
			L := Ps - ps
			pad[r] = S - L
			for h := 0; h < H; h++ {
				d0 := int64((r*H + h) * S * D)
				s0 := int64(((s.row*H+h)*Ps + ps) * D)
				if err := ort.CopyRows(t, d0+int64((S-L)*D), s.g.dc.past[i], s0, int64(L*D)); err != nil {
					return fail(err)
				}
				if err := fillPadding(t, d0, S-L, D); err != nil {
					return fail(err)
				}
			}
		}
	}
	dc.releasePast()
	dc.past = next
	dc.mask.Release()
	dc.mask = nil // the next run uploads the mask of the new padding (feedMask)
	run.B, run.P, run.pad = B, S, pad
	b.c.rows.Store(int64(B))
	b.c.cachePos.Store(int64(B * S))
	return nil
}

// fillPadding writes the n padding columns (of d floats) at the start of a
// row's block from element d0 with copies of the column right after them,
// doubling the filled span at each copy.
func fillPadding(t *ort.DeviceTensor, d0 int64, n, d int) error {
	if n == 0 {
		return nil
	}
	col := int64(d)
	if err := ort.CopyRows(t, d0+int64(n-1)*col, t, d0+int64(n)*col, col); err != nil {
		return err
	}
	for filled := 1; filled < n; {
		k := min(filled, n-filled)
		// The filled span is [n-filled, n); copy its first k columns below it.
		if err := ort.CopyRows(t, d0+int64(n-filled-k)*col, t, d0+int64(n-filled)*col, int64(k)*col); err != nil {
			return err
		}
		filled += k
	}
	return nil
}
