package lm

import (
	"context"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// penalizedRef applies s's penalties to logits in float64, from scratch:
// the repetition penalty to every id in prompt or gen, the frequency and
// presence penalties to ids in gen by their count.
func penalizedRef(logits []float32, prompt, gen []int64, s Sampling) []float64 {
	z := make([]float64, len(logits))
	for i, v := range logits {
		z[i] = float64(v)
	}
	count := map[int64]int{}
	for _, id := range gen {
		count[id]++
	}
	seen := map[int64]bool{}
	for _, id := range append(slices.Clone(prompt), gen...) {
		seen[id] = true
	}
	for id := range seen {
		if s.RepetitionPenalty != 0 {
			if z[id] < 0 {
				z[id] *= s.RepetitionPenalty
			} else {
				z[id] /= s.RepetitionPenalty
			}
		}
		if n := count[id]; n > 0 {
			z[id] -= float64(n)*s.FrequencyPenalty + s.PresencePenalty
		}
	}
	return z
}

// argmaxMargin is the first position of z's largest value and how far the
// runner-up is below it.
func argmaxMargin(z []float64) (int, float64) {
	best := 0
	for i, v := range z {
		if v > z[best] {
			best = i
		}
	}
	second := math.Inf(-1)
	for i, v := range z {
		if i != best {
			second = math.Max(second, v)
		}
	}
	return best, z[best] - second
}

// Greedy decoding with the penalties picks, at every step, the argmax of
// the model's logits for the sequence so far with the penalties applied
// from scratch in float64 (the prompt counts for the repetition penalty
// only); each penalty changes some continuation. Vocabularies with blocks
// (30030), without (the prime 30011) and small ones (97, 101).
func TestPenaltiesGreedyMatchReference(t *testing.T) {
	models := map[string]*Model{"V30030": graphHeadModelV(t, 30030), "V30011": graphHeadModelV(t, 30011)}
	for name, c := range testConfigs() {
		models[name] = buildModel(t, c)
	}
	prompts := [][]int64{{1, 5, 9, 5, 5, 12}, {1, 7}, {1, 3, 3, 3, 8, 9, 10, 11}}
	penalties := []Sampling{
		{RepetitionPenalty: 1.3},
		{FrequencyPenalty: 0.6},
		{PresencePenalty: 0.8},
		{RepetitionPenalty: 1.2, FrequencyPenalty: 0.3, PresencePenalty: 0.2},
		{RepetitionPenalty: 0.8, FrequencyPenalty: -0.4},
	}
	ctx := context.Background()
	for name, m := range models {
		plain, _, err := m.Generate(ctx, prompts, GenerateOptions{MaxNewTokens: 24, IgnoreEOS: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range penalties {
			comps, _, err := m.Generate(ctx, prompts, GenerateOptions{MaxNewTokens: 24, IgnoreEOS: true, Sampling: s})
			if err != nil {
				t.Fatal(err)
			}
			changed, checked := false, 0
			for r, c := range comps {
				changed = changed || !slices.Equal(c.Tokens, plain[r].Tokens)
				for i, tok := range c.Tokens {
					seq := append(slices.Clone(prompts[r]), c.Tokens[:i]...)
					logits, _, err := m.Forward(ctx, [][]int64{seq}, 0)
					if err != nil {
						t.Fatal(err)
					}
					V := m.Layout.Vocab
					want, margin := argmaxMargin(penalizedRef(logits[(len(seq)-1)*V:len(seq)*V], prompts[r], c.Tokens[:i], s))
					if want != int(tok) {
						if margin < 1e-4 { // a near tie: float rounding may pick either
							break
						}
						t.Fatalf("%s %+v row %d token %d: picked %d, the penalized argmax is %d (margin %.3g)", name, s, r, i, tok, want, margin)
					}
					checked++
				}
			}
			if !changed {
				t.Errorf("%s %+v: every continuation is the unpenalized one", name, s)
			}
			if checked < len(prompts)*24/2 {
				t.Errorf("%s %+v: only %d steps checked (near ties)", name, s, checked)
			}
		}
	}
}

// samplingHeadOf is what a sampling head gives for logits at inverse
// temperature inv: float32 softmax and its block sums (nil when V has no
// blocks), and the row total.
func samplingHeadOf(logits []float32, inv float32) (probs, blocks []float32, total float64) {
	probs = make([]float32, len(logits))
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v*inv))
	}
	var z float64
	for _, v := range logits {
		z += math.Exp(float64(v*inv) - mx)
	}
	for i, v := range logits {
		probs[i] = float32(math.Exp(float64(v*inv)-mx) / z)
	}
	if n := blockLen(len(logits)); n > 0 {
		blocks = make([]float32, len(logits)/n)
		for b := range blocks {
			blocks[b] = float32(sum(probs[b*n : (b+1)*n]))
			total += float64(blocks[b])
		}
	} else {
		total = sum(probs)
	}
	return probs, blocks, total
}

// penaltyCase is a row of logits with a sequence's seen tokens.
type penaltyCase struct {
	logits      []float32
	prompt, gen []int64
}

func (c penaltyCase) seen() *seenTokens {
	t := &seenTokens{prompt: promptIDs(c.prompt)}
	for _, id := range c.gen {
		t.add(int(id))
	}
	return t
}

// A penalty that takes nearly all of a block's mass leaves that block's sum
// as the difference of two close numbers: the head's float32 sum (off from
// the exact one by its rounding, here 1e-6) less the token's probability.
// The draw sums that block anew from its elements, so the rounding does not
// become the block's weight.
func TestPenaltiesCancelledBlockSum(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const V = 4096 // blocks of 64
	logits := make([]float32, V)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	for i := 64; i < 128; i++ {
		logits[i] = -20
	}
	logits[100] = 12
	c := penaltyCase{logits: logits, gen: []int64{100}}
	s := Sampling{Temperature: 1, PresencePenalty: 30}
	checkDrawsWith(t, c, s, 3000, func(blocks []float32) { blocks[1] += 1e-6 })
}

// checkDraws draws n tokens through pickToken (from the head's outputs at
// s's temperature) and checks each against the token the penalized
// distribution's inverse CDF (wantDistribution, walked in the draw's order)
// gives for the same uniform number, unless that number lies within float
// rounding of a token boundary.
func checkDraws(t *testing.T, c penaltyCase, s Sampling, n int) {
	t.Helper()
	checkDrawsWith(t, c, s, n, nil)
}

// checkDrawsWith is checkDraws with the head's block sums edited by edit
// (nil: as computed).
func checkDrawsWith(t *testing.T, c penaltyCase, s Sampling, n int, edit func(blocks []float32)) {
	t.Helper()
	inv := float32(1 / s.Temperature)
	probs, blocks, _ := samplingHeadOf(c.logits, inv)
	if edit != nil {
		edit(blocks)
	}
	h := &headOut{kind: headKind{sample: true}, probs: probs}
	if blocks != nil {
		h.blocks = blocks
	} else {
		h.sums = []float32{float32(sum(probs))}
	}
	dist, order := wantDistribution(c, s)
	var p picker
	rng, same := rowRNG(9, 0, 0), rowRNG(9, 0, 0) // each draw takes one number
	seen := c.seen()
	counts := map[int]int{}
	for range n {
		tok := p.pickToken(h, 0, c.logits, s, float64(inv), rng, seen)
		u, cum, want, near := same.Float64(), 0.0, order[len(order)-1], 1.0
		for _, i := range order {
			cum += dist[i]
			if u < cum {
				want, near = i, min(cum-u, u-(cum-dist[i]))
				break
			}
		}
		if tok != want && near > 1e-6 {
			t.Fatalf("%+v: drew %d at u %.9f, the penalized distribution's token is %d (boundary %.2g away)", s, tok, u, want, near)
		}
		counts[tok]++
	}
	if len(counts) < 2 {
		t.Fatalf("%+v: every draw gave the same token %v", s, counts)
	}
}

// wantDistribution is the penalized, tempered, top-k- and top-p-filtered
// distribution in float64, and the order the draw walks its tokens in: by
// id, or with a filter the candidates from the likeliest.
func wantDistribution(c penaltyCase, s Sampling) ([]float64, []int) {
	z := penalizedRef(c.logits, c.prompt, c.gen, s)
	f := make([]float32, len(z))
	for i, v := range z {
		f[i] = float32(v)
	}
	p := softmax(f, s.Temperature)
	order := make([]int, len(p))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case p[a] > p[b]:
			return -1
		case p[a] < p[b]:
			return 1
		}
		return 0
	})
	if s.TopK == 0 && (s.TopP == 0 || s.TopP == 1) {
		for i := range order {
			order[i] = i
		}
		return p, order
	}
	keep := order
	if s.TopK > 0 {
		keep = keep[:s.TopK]
	}
	if s.TopP > 0 && s.TopP < 1 {
		var tot, cum float64
		for _, i := range keep {
			tot += p[i]
		}
		for k, i := range keep {
			cum += p[i]
			if cum >= s.TopP*tot {
				keep = keep[:k+1]
				break
			}
		}
	}
	return renorm(p, keep), keep
}

// Draws with the penalties follow the penalized distribution (computed from
// scratch in float64), with and without block sums, with top-k and top-p,
// where the penalties move most of the mass.
func TestPenaltiesDrawMatchesDistribution(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, V := range []int{4096, 4093} { // blocks of 64; prime, none
		logits := make([]float32, V)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		// A few likely tokens, most of them seen.
		for _, id := range []int{5, 17, 300, 1000, 2048, 4000} {
			logits[id] = 7 + float32(id%5)
		}
		logits[33] = -6
		c := penaltyCase{logits: logits, prompt: []int64{5, 17, 17, 33, 300}, gen: []int64{5, 1000, 2048, 2048, 2048, 33}}
		for _, s := range []Sampling{
			{Temperature: 1, RepetitionPenalty: 1.4},
			{Temperature: 0.8, RepetitionPenalty: 1.4, FrequencyPenalty: 0.5, PresencePenalty: 0.3},
			{Temperature: 1.3, FrequencyPenalty: -0.7},
			{Temperature: 0.9, RepetitionPenalty: 1.2, PresencePenalty: 1, TopK: 4},
			{Temperature: 0.9, RepetitionPenalty: 1.2, PresencePenalty: 1, TopP: 0.7},
		} {
			checkDraws(t, c, s, 3000)
		}
	}
}

// When the penalties take nearly all the mass from tokens whose float32
// probabilities were the only ones that did not underflow (a low
// temperature), the draw computes the penalized softmax anew: it follows
// the penalized distribution, and an untempered draw's log-prob is the raw
// log-softmax, finite.
func TestPenaltiesUnderflowedMass(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const V = 4096
	logits := make([]float32, V)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	logits[7] = 60
	c := penaltyCase{logits: logits, gen: []int64{7}}
	s := Sampling{Temperature: 0.5, PresencePenalty: 100}
	if p, _, _ := samplingHeadOf(logits, 2); p[8] != 0 {
		t.Fatalf("the other tokens' probabilities did not underflow (%g)", p[8])
	}
	checkDraws(t, c, s, 3000)

	// Untempered: the raw log-prob of a drawn token whose head probability
	// is 0.
	logits[7] = 200
	probs, blocks, _ := samplingHeadOf(logits, 1)
	h := &headOut{kind: headKind{sample: true, logProbs: true}, probs: probs, blocks: blocks}
	rp, p := newRowPicker(1), &picker{}
	s = Sampling{Temperature: 1, PresencePenalty: 400}
	tok := p.pickToken(h, 0, logits, s, 1, rowRNG(1, 0, 0), c.seen())
	if tok == 7 || probs[tok] != 0 {
		t.Fatalf("drew %d (head probability %g); want a token other than the penalized 7, whose probability underflowed", tok, probs[tok])
	}
	rp.setToken(0, tok, h, logits, true)
	if want := logSoftmaxAt(logits, int64(tok)); math.IsInf(rp.lp[0], 0) || math.Abs(rp.lp[0]-want) > 1e-9*math.Abs(want) {
		t.Fatalf("log-prob %g, want the raw log-softmax %g", rp.lp[0], want)
	}
}

// Sampling with penalties is reproducible for a seed, and a request through
// the continuous batcher gets what Generate gives (TestBatcherJoinsRunningBatch
// mixes penalized requests into a running batch).
func TestPenaltiesSampledReproducible(t *testing.T) {
	m := graphHeadModelV(t, 30030)
	o := GenerateOptions{MaxNewTokens: 20, IgnoreEOS: true, NumGenerations: 2, Seed: 4,
		Sampling: Sampling{Temperature: 0.9, RepetitionPenalty: 1.3, FrequencyPenalty: 0.4}}
	prompts := [][]int64{{1, 5, 9, 5}, {1, 7, 7}}
	a, _, err := m.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := m.Generate(context.Background(), prompts, o)
	if err != nil {
		t.Fatal(err)
	}
	for i := range a {
		if !slices.Equal(a[i].Tokens, b[i].Tokens) {
			t.Fatalf("completion %d: %v, then %v", i, a[i].Tokens, b[i].Tokens)
		}
	}
}

// BenchmarkPenalties: what the penalties cost a decode step at batch 8 on
// the 151k-vocabulary bench model, 256-token prompts (many distinct ids, as
// a LaMP profile gives) and 64 new tokens, greedy and sampled (temperature
// 1, log-probs): repetition_penalty 1.1, frequency_penalty 0.2 and
// presence_penalty 0.2 against none, in alternating rounds, each side
// keeping its best. x_penalized_vs_plain is the decode step's ratio.
func BenchmarkPenalties(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(8, 256)
	pen := Sampling{RepetitionPenalty: 1.1, FrequencyPenalty: 0.2, PresencePenalty: 0.2}
	for _, mode := range []string{"greedy", "sample"} {
		b.Run(mode, func(b *testing.B) {
			plain := GenerateOptions{MaxNewTokens: 64, IgnoreEOS: true, Seed: 1}
			if mode == "sample" {
				plain.Temperature = 1
			}
			penalized := plain
			penalized.RepetitionPenalty, penalized.FrequencyPenalty, penalized.PresencePenalty = pen.RepetitionPenalty, pen.FrequencyPenalty, pen.PresencePenalty
			step := func(o GenerateOptions) time.Duration {
				_, st, err := m.Generate(context.Background(), prompts, o)
				if err != nil {
					b.Fatal(err)
				}
				return st.Decode / time.Duration(st.DecodeSteps)
			}
			step(plain) // warm-up
			step(penalized)
			bestPlain, bestPen := time.Duration(1<<62), time.Duration(1<<62)
			for i := 0; i < b.N; i++ {
				for range 4 {
					bestPlain = min(bestPlain, step(plain))
					bestPen = min(bestPen, step(penalized))
				}
			}
			b.ReportMetric(bestPlain.Seconds()*1e3, "plain_ms/step")
			b.ReportMetric(bestPen.Seconds()*1e3, "penalized_ms/step")
			b.ReportMetric(bestPen.Seconds()/bestPlain.Seconds(), "x_penalized_vs_plain")
		})
	}
}

// argmaxLowered (the pruned scan for penalties that only lower logits)
// gives the first position of the largest changed logit, as a scan of the
// whole changed row does, on rows full of ties (small integer logits),
// with the maximum changed, unchanged, or in a block of its own.
func TestArgmaxLoweredMatchesFullScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 12))
	const V, blk = 4096, 64
	for trial := range 2000 {
		row := make([]float32, V)
		for i := range row {
			row[i] = float32(rng.IntN(6))
		}
		var mods []adjusted
		for _, id := range rng.Perm(V)[:rng.IntN(400)] {
			mods = append(mods, adjusted{int32(id), row[id] - float32(rng.IntN(3))})
		}
		slices.SortFunc(mods, func(a, b adjusted) int { return int(a.id - b.id) })
		bm := make([]float32, V/blk)
		for j := range bm {
			bm[j] = slices.Max(row[j*blk : (j+1)*blk])
		}
		changed := slices.Clone(row)
		for _, m := range mods {
			changed[m.id] = m.z
		}
		want := 0
		for i, v := range changed {
			if v > changed[want] {
				want = i
			}
		}
		if got := argmaxLowered(bm, row, mods); got != want {
			t.Fatalf("trial %d: %d, the first maximum of the changed row is %d", trial, got, want)
		}
	}
}
