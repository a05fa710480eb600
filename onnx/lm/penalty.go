package lm

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// The penalties (Sampling.RepetitionPenalty, FrequencyPenalty,
// PresencePenalty) change the logits of the few tokens a sequence has
// already seen. The decode head's outputs are of the unchanged logits, so
// instead of a second vocabulary-wide pass the pick corrects them for those
// tokens only: greedy rescans the blocks that hold one (those that can
// still hold the answer), a draw scales each one's probability by
// exp((z' − z)/T) and moves its block's sum. Log-probs stay those of the
// raw model distribution, as without penalties.

// penaltiesOn reports whether s changes any logit.
func (s Sampling) penaltiesOn() bool {
	return s.RepetitionPenalty != 0 && s.RepetitionPenalty != 1 || s.FrequencyPenalty != 0 || s.PresencePenalty != 0
}

// seenTokens is what the penalties know of one sequence: its prompt's
// distinct ids (shared by a prompt's completions) and how often it has
// generated each id, both sorted by id.
type seenTokens struct {
	prompt []int32
	gen    []int32 // distinct generated ids, sorted
	count  []int32 // count[i]: how often gen[i] was generated
}

// promptIDs are the distinct ids of prompt, sorted.
func promptIDs(prompt []int64) []int32 {
	ids := make([]int32, len(prompt))
	for i, id := range prompt {
		ids[i] = int32(id)
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// add records a generated token.
func (t *seenTokens) add(tok int) {
	i, found := slices.BinarySearch(t.gen, int32(tok))
	if found {
		t.count[i]++
		return
	}
	t.gen = slices.Insert(t.gen, i, int32(tok))
	t.count = slices.Insert(t.count, i, 1)
}

// adjusted is one token whose logit the penalties change: its id and the
// changed logit.
type adjusted struct {
	id int32
	z  float32
}

// penalize sets dst to the tokens whose logit s changes in row (one
// sequence's logits), sorted by id. The arithmetic is float32, as
// transformers and vLLM do it on float32 logits: repetition first, then
// frequency, then presence.
func (t *seenTokens) penalize(dst []adjusted, row []float32, s Sampling) []adjusted {
	dst = dst[:0]
	rep := s.RepetitionPenalty != 0 && s.RepetitionPenalty != 1
	repF, freq, pres := float32(s.RepetitionPenalty), float32(s.FrequencyPenalty), float32(s.PresencePenalty)
	one := func(id, n int32) {
		z := row[id]
		if rep {
			if z < 0 {
				z *= repF
			} else {
				z /= repF
			}
		}
		if n > 0 {
			z = z - freq*float32(n) - pres
		}
		dst = append(dst, adjusted{id, z})
	}
	// Merge the two sorted lists; the prompt's ids count only for the
	// repetition penalty.
	i, j := 0, 0
	for i < len(t.prompt) || j < len(t.gen) {
		switch {
		case j == len(t.gen) || i < len(t.prompt) && t.prompt[i] < t.gen[j]:
			if rep {
				one(t.prompt[i], 0)
			}
			i++
		case i == len(t.prompt) || t.gen[j] < t.prompt[i]:
			one(t.gen[j], t.count[j])
			j++
		default: // in both
			one(t.gen[j], t.count[j])
			i++
			j++
		}
	}
	return dst
}

// pickToken picks row r's token from the head's outputs h (row is its
// logits): greedy's argmax or a draw at inverse temperature inv, with the
// penalties applied when seen is not nil.
func (p *picker) pickToken(h *headOut, r int, row []float32, s Sampling, inv float64, rng *rand.Rand, seen *seenTokens) int {
	V := len(row)
	var mods []adjusted
	if seen != nil {
		p.mods = seen.penalize(p.mods, row, s)
		mods = p.mods
	}
	if s.Greedy() {
		return h.argmaxAdjusted(r, row, mods)
	}
	return p.sampleAdjusted(h.probs[r*V:(r+1)*V], h.blockRow(r, V), row, h.rowSum(r, V), mods, inv, s, rng)
}

// argmaxAdjusted is argmax (the first position of the largest logit) over
// row with mods' logits in place of the row's: blocks that hold no changed
// token keep the head's block max, the others are rescanned — only those
// that could still hold the answer when the penalties only lower logits.
func (h *headOut) argmaxAdjusted(r int, row []float32, mods []adjusted) int {
	if len(mods) == 0 {
		return h.argmax(r, row)
	}
	bm := h.mx[r*h.mxw : (r+1)*h.mxw]
	if len(bm) > 1 && lowersOnly(row, mods) {
		return argmaxLowered(bm, row, mods)
	}
	blk := len(row) / len(bm)
	best, at, k := float32(0), -1, 0
	untouched := -1 // the block whose head max is best, when one is
	for j, m := range bm {
		lo, hi := j*blk, (j+1)*blk
		if k == len(mods) || int(mods[k].id) >= hi {
			if at < 0 || m > best {
				best, at, untouched = m, lo, j
			}
			continue
		}
		for i := lo; i < hi; i++ {
			v := row[i]
			if k < len(mods) && int(mods[k].id) == i {
				v = mods[k].z
				k++
			}
			if at < 0 || v > best {
				best, at, untouched = v, i, -1
			}
		}
	}
	if untouched >= 0 {
		lo := untouched * blk
		return lo + argmaxAt(row[lo:lo+blk], best)
	}
	return at
}

// lowersOnly reports whether no changed logit is above the row's.
func lowersOnly(row []float32, mods []adjusted) bool {
	for _, m := range mods {
		if !(m.z <= row[m.id]) {
			return false
		}
	}
	return true
}

// argmaxLowered is argmaxAdjusted for changes that only lower logits: a
// block holding a changed token then has its maximum at most at the head's
// block max bm[j], so those blocks are scanned from the highest block max
// down, and the scan stops at the first block whose max is below the best
// value found (or equal to it, but starting after its position).
func argmaxLowered(bm, row []float32, mods []adjusted) int {
	blk := len(row) / len(bm)
	type span struct{ block, from, to int } // a block and its mods[from:to]
	var touched []span
	for k := 0; k < len(mods); {
		j := int(mods[k].id) / blk
		from := k
		for k < len(mods) && int(mods[k].id)/blk == j {
			k++
		}
		touched = append(touched, span{j, from, k})
	}
	best, at := float32(math.Inf(-1)), -1
	t := 0
	for j, m := range bm {
		if t < len(touched) && touched[t].block == j {
			t++
			continue
		}
		if at < 0 || m > best {
			best, at = m, j
		}
	}
	if at >= 0 {
		at = at*blk + argmaxAt(row[at*blk:(at+1)*blk], best)
	}
	slices.SortFunc(touched, func(a, b span) int {
		if bm[a.block] != bm[b.block] {
			return cmp.Compare(bm[b.block], bm[a.block])
		}
		return cmp.Compare(a.block, b.block)
	})
	for _, sp := range touched {
		lo := sp.block * blk
		if at >= 0 && (bm[sp.block] < best || bm[sp.block] == best && lo > at) {
			if bm[sp.block] < best {
				break
			}
			continue
		}
		k := sp.from
		for i := lo; i < lo+blk; i++ {
			v := row[i]
			if k < sp.to && int(mods[k].id) == i {
				v = mods[k].z
				k++
			}
			if at < 0 || v > best || v == best && i < at {
				best, at = v, i
			}
		}
	}
	return at
}

// sampleAdjusted is sample with mods' logits in place of the row's: each
// changed token's probability in probs (softmax(row·inv), which the head
// computed) scaled by exp((z' − z)·inv). A plain draw over block sums
// adjusts the sums (drawOverBlocks); top-k and top-p, and rows without
// blocks, draw from a copy of probs with the blocks holding a changed token
// re-summed. When the penalties took
// nearly all the mass (the row's likeliest tokens penalized at a low
// temperature, where the others' float32 probabilities may have
// underflowed), the copy is instead the softmax of the changed logits
// computed anew in float64.
func (p *picker) sampleAdjusted(probs, blocks, row []float32, total float64, mods []adjusted, inv float64, s Sampling, rng *rand.Rand) int {
	if len(mods) == 0 {
		return p.sample(probs, blocks, total, s, rng)
	}
	if blocks != nil && !s.topKOn(len(probs)) && !s.topPOn() {
		if tok, ok := p.drawOverBlocks(probs, blocks, row, total, mods, inv, rng); ok {
			return tok
		}
	}
	p.probs = append(p.probs[:0], probs...)
	for _, m := range mods {
		p.probs[m.id] = float32(float64(probs[m.id]) * math.Exp((float64(m.z)-float64(row[m.id]))*inv))
	}
	var sums []float32
	if blocks != nil {
		p.blocks = append(p.blocks[:0], blocks...)
		sums = p.blocks
	}
	changed := resum(p.probs, sums, mods)
	if changed < 1e-6*total {
		changed = softmaxAdjusted(p.probs, sums, row, mods, inv)
	}
	return p.sample(p.probs, sums, changed, s, rng)
}

// drawOverBlocks is the plain draw (no top-k or top-p) with mods' logits,
// without copying the row: each changed token's weight w = p·exp((z'−z)·inv)
// moves its block's sum by w − p, in float64 (a block left with under a
// thousandth of its sum, where that difference cancels, is summed anew from
// its elements); the draw walks the adjusted sums, then the chosen block
// with the weights in place. ok is false, before anything is drawn, when
// the penalties took nearly all the mass (sampleAdjusted's fallback).
func (p *picker) drawOverBlocks(probs, blocks, row []float32, total float64, mods []adjusted, inv float64, rng *rand.Rand) (tok int, ok bool) {
	n := len(probs) / len(blocks)
	p.sums = p.sums[:0]
	for _, b := range blocks {
		p.sums = append(p.sums, float64(b))
	}
	p.w = p.w[:0]
	for _, m := range mods {
		old := float64(probs[m.id])
		w := old * math.Exp((float64(m.z)-float64(row[m.id]))*inv)
		p.w = append(p.w, w)
		p.sums[int(m.id)/n] += w - old
	}
	for k := 0; k < len(mods); {
		b, from := int(mods[k].id)/n, k
		for k < len(mods) && int(mods[k].id)/n == b {
			k++
		}
		if p.sums[b] < 1e-3*float64(blocks[b]) {
			p.sums[b] = 0
			for _, x := range p.weights(probs, mods[from:k], p.w[from:k], b*n, (b+1)*n) {
				p.sums[b] += x
			}
		}
	}
	var t float64
	for _, x := range p.sums {
		t += x
	}
	if !(t >= 1e-6*total) {
		return 0, false
	}
	u := rng.Float64() * t
	b := len(p.sums) - 1
	for k, x := range p.sums {
		if u < x {
			b = k
			break
		}
		u -= x
	}
	for p.sums[b] <= 0 && b > 0 { // rounding left u past the end
		b--
	}
	from, _ := slices.BinarySearchFunc(mods, int32(b*n), func(m adjusted, id int32) int { return cmp.Compare(m.id, id) })
	to, _ := slices.BinarySearchFunc(mods, int32((b+1)*n), func(m adjusted, id int32) int { return cmp.Compare(m.id, id) })
	last := b * n
	for i, x := range p.weights(probs, mods[from:to], p.w[from:to], b*n, (b+1)*n) {
		if x > 0 {
			last = b*n + i
		}
		if u -= x; u < 0 {
			return b*n + i, true
		}
	}
	return last, true // rounding: the block's last token with weight
}

// weights are the draw weights of probs[lo:hi] with mods' weights w in
// place (mods within [lo, hi), sorted), in p's scratch.
func (p *picker) weights(probs []float32, mods []adjusted, w []float64, lo, hi int) []float64 {
	p.blockW = p.blockW[:0]
	k := 0
	for i := lo; i < hi; i++ {
		x := float64(probs[i])
		if k < len(mods) && int(mods[k].id) == i {
			x = w[k]
			k++
		}
		p.blockW = append(p.blockW, x)
	}
	return p.blockW
}

// resum recomputes the block sums (nil: none) of the blocks holding a
// changed token from probs, in float64, and returns the row's total.
func resum(probs, sums []float32, mods []adjusted) float64 {
	if sums == nil {
		var t float64
		for _, x := range probs {
			t += float64(x)
		}
		return t
	}
	n := len(probs) / len(sums)
	last := -1
	for _, m := range mods {
		b := int(m.id) / n
		if b == last {
			continue
		}
		last = b
		var s float64
		for _, x := range probs[b*n : (b+1)*n] {
			s += float64(x)
		}
		sums[b] = float32(s)
	}
	var t float64
	for _, x := range sums {
		t += float64(x)
	}
	return t
}

// softmaxAdjusted writes exp(z'·inv − max) for the whole row (z' the row
// with mods in place) into probs, in float64 before rounding, with their
// block sums (nil: none), and returns the total.
func softmaxAdjusted(probs, sums, row []float32, mods []adjusted, inv float64) float64 {
	copy(probs, row)
	for _, m := range mods {
		probs[m.id] = m.z
	}
	mx := math.Inf(-1)
	for _, z := range probs {
		mx = max(mx, float64(z)*inv)
	}
	var t float64
	n := len(probs)
	if sums != nil {
		n = len(probs) / len(sums)
	}
	for b := 0; b*n < len(probs); b++ {
		var s float64
		for i := b * n; i < (b+1)*n; i++ {
			w := math.Exp(float64(probs[i])*inv - mx)
			probs[i] = float32(w)
			s += float64(probs[i])
		}
		if sums != nil {
			sums[b] = float32(s)
			s = float64(sums[b]) // the total the draw's block walk sees
		}
		t += s
	}
	return t
}

// rawLogProb is log softmax(row)[tok] in float64, for a token whose
// float32 probability from the head underflowed.
func rawLogProb(row []float32, tok int) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = max(mx, float64(v))
	}
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v) - mx)
	}
	return float64(row[tok]) - mx - math.Log(z)
}
