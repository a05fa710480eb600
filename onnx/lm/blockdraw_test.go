package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

func TestBlockLen(t *testing.T) {
	for _, c := range []struct{ V, want int }{
		{151669, 461}, // 7·47·461: 329 blocks of 461
		{151936, 1187},
		{30030, 182},
		{32000, 200},
		{30011, 0}, // prime
		{2048, 0},  // small: walking the row is cheap
	} {
		got := blockLen(c.V)
		if got != c.want || (got > 0 && c.V%got != 0) {
			t.Errorf("blockLen(%d) = %d, want %d", c.V, got, c.want)
		}
	}
}

// TestScanBlocksMatchesScan: with block sums that are exact (probabilities
// on a 2^-24 grid, so every sum is exact in float32 and float64) the draw
// over blocks picks what the walk over the row picks, for every u from 0 to
// past the total, each token's boundaries included; zero tokens and zero
// blocks are never picked.
func TestScanBlocksMatchesScan(t *testing.T) {
	const V, blk = 600, 20
	rng := rand.New(rand.NewPCG(1, 2))
	probs := make([]float32, V)
	for i := range probs {
		switch {
		case i/blk == 3 || i/blk == V/blk-1: // two blocks without mass, the last one too
		case rng.IntN(4) == 0: // scattered zeros
		default:
			probs[i] = float32(rng.IntN(1<<8)) / (1 << 24)
		}
	}
	blocks := make([]float32, V/blk)
	var total float64
	for i, p := range probs {
		blocks[i/blk] += p
		total += float64(p)
	}
	us := []float64{0, total, total * 1.0000001, math.Nextafter(total, 0)}
	var cum float64
	for _, p := range probs {
		cum += float64(p)
		us = append(us, cum, math.Nextafter(cum, 0), math.Nextafter(cum, 2))
	}
	for i := 0; i < 2000; i++ {
		us = append(us, rng.Float64()*total)
	}
	for _, u := range us {
		want, got := scan(probs, u), scanBlocks(probs, blocks, u)
		if got != want {
			t.Fatalf("u = %v: block draw picked %d, row walk %d", u, got, want)
		}
		if probs[got] == 0 {
			t.Fatalf("u = %v: picked %d, which has no mass", u, got)
		}
	}
	// Rounded block sums a little above their elements' sum: u in the gap
	// still lands in that block, on its last token with mass.
	blocks[5] += 1e-7
	var before float64
	for _, b := range blocks[:5] {
		before += float64(b)
	}
	last := 6*blk - 1
	for probs[last] == 0 {
		last--
	}
	if got := scanBlocks(probs, blocks, before+float64(blocks[5])-1e-8); got != last {
		t.Fatalf("u in block 5's rounding gap: picked %d, want %d (the block's last token with mass)", got, last)
	}
}

// TestGraphHeadBlockSums: with a vocabulary that has blocks (30030: 165
// blocks of 182) the head in the graph sums each sampled row's
// probabilities in blocks, and leaves them out when it does not sample; a
// prime vocabulary (30011) has none and the draw walks the row.
func TestGraphHeadBlockSums(t *testing.T) {
	if m := graphHeadModel(t); m.Layout.HasBlockSums {
		t.Fatal("the 30011 vocabulary has no blocks, but the graph has block sums")
	}
	m := graphHeadModelV(t, 30030)
	if !m.Layout.HasBlockSums {
		t.Fatal("Load did not add the block sums to the head (30030 = 165 blocks of 182)")
	}
	prompts := [][]int64{{1, 5, 9, 14, 3}, {1, 40, 41}, {1, 7, 8, 9}}
	B, V, n := len(prompts), m.Layout.Vocab, 30030/182
	for _, k := range []headKind{{}, {logProbs: true}, {sample: true, logProbs: true}, {sample: true, tempered: true},
		{sample: true, tempered: true, perRow: true}} {
		q := graphHeadReq{kind: k, inv: 1 / 0.7, rowInv: []float32{1, 0.5, 2}}
		m.mu.Lock()
		g, logits, st := graphHeadStep(t, m, prompts, &q)
		h, err := m.lastHead(g, q, logits[:B*V], B, &st.Head)
		g.release()
		m.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("%+v", k)
		if !k.sample {
			if len(h.blocks) != 0 || h.blockRow(0, V) != nil {
				t.Fatalf("%s: %d block sums from a head that does not sample", name, len(h.blocks))
			}
			continue
		}
		if len(h.blocks) != B*n {
			t.Fatalf("%s: %d block sums, want %d", name, len(h.blocks), B*n)
		}
		for r := 0; r < B; r++ {
			row, bs := h.probs[r*V:(r+1)*V], h.blockRow(r, V)
			var total float64
			for j := range bs {
				var want float64
				for _, p := range row[j*182 : (j+1)*182] {
					want += float64(p)
				}
				total += float64(bs[j])
				if d := math.Abs(float64(bs[j]) - want); d > 1e-6*want+1e-12 {
					t.Fatalf("%s row %d block %d: sum %v, the block's probabilities add to %v", name, r, j, bs[j], want)
				}
			}
			if d := math.Abs(total - float64(h.sums[r])); d > 1e-5 {
				t.Fatalf("%s row %d: block sums add to %v, the row sum is %v", name, r, total, h.sums[r])
			}
		}
	}
}
