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
		if len(h.blocks) != B*n || len(h.sums) != 0 {
			t.Fatalf("%s: %d block sums and %d row sums, want %d and none (the row sums come from the blocks)", name, len(h.blocks), len(h.sums), B*n)
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
			if got := h.rowSum(r, V); got != total {
				t.Fatalf("%s row %d: the draw's row sum is %v, the block sums add to %v", name, r, got, total)
			}
			if d := math.Abs(total - sum(row)); d > 1e-6 {
				t.Fatalf("%s row %d: block sums add to %v, the row's probabilities to %v", name, r, total, sum(row))
			}
		}
	}
}

// TestDrawLogProbsExact: the log-prob Generate records for a picked token
// is within 1e-6 (relative) of the float64 log-softmax of the logits it was
// picked from, for every way it is computed: greedy and tempered sampling
// read the head's log-softmax, untempered sampling divides the token's
// probability by the draw's row sum (the sum of the block sums with 30030
// and Qwen's 151,669 = 329 × 461, the head's row sum with the prime 30011),
// from the head in the graph and from the separate head.
func TestDrawLogProbsExact(t *testing.T) {
	for _, V := range []int{30011, 30030, 151669} {
		t.Run(fmt.Sprintf("vocab=%d", V), func(t *testing.T) { drawLogProbsExact(t, graphHeadModelV(t, V)) })
	}
}

func drawLogProbsExact(t *testing.T, m *Model) {
	prompts := [][]int64{{1, 5, 9, 14, 3}, {1, 40, 41}, {1, 7, 8, 9}}
	for _, s := range []Sampling{{}, {Temperature: 1}, {Temperature: 0.7}} {
		q := graphHeadReq{kind: headKind{sample: !s.Greedy(), tempered: !s.Greedy() && s.Temperature != 1, logProbs: true}, inv: 1}
		if !s.Greedy() {
			q.inv = float32(1 / s.Temperature)
		}
		drawLogProbsStep(t, m, prompts, q, s)
	}
}

// drawLogProbsStep is one sampling setting of drawLogProbsExact (its
// defers release the model's lock when a check fails).
func drawLogProbsStep(t *testing.T, m *Model, prompts [][]int64, q graphHeadReq, s Sampling) {
	B, V := len(prompts), m.Layout.Vocab
	m.mu.Lock()
	defer m.mu.Unlock()
	g, logits, st := graphHeadStep(t, m, prompts, &q)
	defer g.release()
	last := logits[:B*V]
	for _, separate := range []bool{false, true} {
		g.headRan = !separate
		h, err := m.lastHead(g, q, last, B, &st.Head)
		if err != nil {
			t.Fatal(err)
		}
		rp, p := newRowPicker(B), &picker{}
		worst := 0.0
		for r := 0; r < B; r++ {
			row := last[r*V : (r+1)*V]
			for d := 0; d < 40; d++ {
				rp.setToken(r, p.pickToken(h, r, row, s, float64(q.inv), rowRNG(7, r, d), nil), h, row, true)
				tok := rp.tok[r]
				want := logSoftmaxAt(row, int64(tok))
				rel := math.Abs(rp.lp[r]-want) / math.Abs(want)
				if rel > 1e-6 {
					t.Fatalf("%+v separate %v row %d token %d: log-prob %.9g, the float64 log-softmax %.9g (relative error %.2g)", s, separate, r, tok, rp.lp[r], want, rel)
				}
				worst = max(worst, rel)
			}
		}
		t.Logf("%+v separate %v: worst relative error %.2g", s, separate, worst)
	}
}
