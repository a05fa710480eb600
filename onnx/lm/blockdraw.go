package lm

// The sampled draw over block sums. A plain draw (no top-k/top-p) walks a
// row's probabilities until their running sum passes u; over a 151k
// vocabulary that walk read 0.3 MB a row on average (2.4 MB at batch 8)
// between two model runs. The decode heads (addProbSums) also sum the
// probabilities in blocks of blockLen(V), so the draw walks a few hundred
// block sums and then one block.

// blockLen is the block length the decode heads sum probabilities over
// for a vocabulary of V: the divisor of V (so the probabilities reshape to
// [.., V/len, len] without a copy) that makes blocks + block length
// smallest, the longer block on a tie; 0 when no divisor saves much (a
// small or prime vocabulary), and the draw then walks the probabilities.
func blockLen(V int) int {
	if V < 4096 {
		return 0
	}
	best := 0
	for d := 16; d*d <= V; d++ {
		if V%d == 0 {
			best = d
		}
	}
	if best == 0 {
		return 0
	}
	n := V / best // best <= sqrt(V) <= n: the longer block is n
	if best+n > V/8 {
		return 0
	}
	return n
}

// scanBlocks is scan (sample.go) over blocks, the sums of probs in
// consecutive blocks of len(probs)/len(blocks): it skips whole blocks while
// u is past their sum and walks only the block that holds u. With exact
// sums it returns what scan returns; with rounded ones it differs only when
// u lies within rounding of a token's boundary.
func scanBlocks(probs, blocks []float32, u float64) int {
	n := len(probs) / len(blocks)
	k := 0
	for ; k < len(blocks); k++ {
		bs := float64(blocks[k])
		if u < bs {
			break
		}
		u -= bs
	}
	if k == len(blocks) {
		// Rounding left u at ~0 past the last block: the last token with mass.
		return lastWithMass(probs, len(probs)-1)
	}
	b := probs[k*n : (k+1)*n]
	for i, x := range b {
		u -= float64(x)
		if u < 0 {
			return k*n + i
		}
	}
	// The block's sum passed u but its elements, added one by one, fell
	// short by rounding: the block's last token with mass (it has some,
	// since its sum exceeds u >= 0).
	return lastWithMass(probs, (k+1)*n-1)
}

// lastWithMass is the last index <= i whose probability is positive (0 if
// none).
func lastWithMass(probs []float32, i int) int {
	for i > 0 && probs[i] <= 0 {
		i--
	}
	return i
}
