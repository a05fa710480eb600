package lm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

func softmax(logits []float32, temp float64) []float64 {
	mx := math.Inf(-1)
	for _, v := range logits {
		mx = math.Max(mx, float64(v))
	}
	p := make([]float64, len(logits))
	var z float64
	for i, v := range logits {
		p[i] = math.Exp((float64(v) - mx) / temp)
		z += p[i]
	}
	for i := range p {
		p[i] /= z
	}
	return p
}

func TestSampleMatchesDistribution(t *testing.T) {
	logits := []float32{1, 0, -0.5, 2, 0.3, -3}
	const n = 200000
	for _, tc := range []struct {
		name string
		s    Sampling
		want []float64
	}{
		{"temperature", Sampling{Temperature: 0.7}, softmax(logits, 0.7)},
		{"plain", Sampling{Temperature: 1}, softmax(logits, 1)},
		{"temperature top-k", Sampling{Temperature: 2, TopK: 2}, renorm(softmax(logits, 2), []int{3, 0})},
		{"top-k", Sampling{Temperature: 1, TopK: 3}, renorm(softmax(logits, 1), []int{3, 0, 4})},
		// Sorted probs at T=1: id3 .564, id0 .207, id4 .103 … p=0.75 keeps {3,0}, p=0.8 {3,0,4}.
		{"top-p", Sampling{Temperature: 1, TopP: 0.75}, renorm(softmax(logits, 1), []int{3, 0})},
		{"top-p wider", Sampling{Temperature: 1, TopP: 0.8}, renorm(softmax(logits, 1), []int{3, 0, 4})},
		{"top-k then top-p", Sampling{Temperature: 1, TopK: 2, TopP: 0.5}, renorm(softmax(logits, 1), []int{3})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rng := rowRNG(42, 0, 0)
			var pk picker
			probs := f32s(softmax(logits, tc.s.Temperature))
			counts := make([]float64, len(logits))
			for i := 0; i < n; i++ {
				counts[pk.sample(probs, nil, sum(probs), tc.s, rng)]++
			}
			for i, c := range counts {
				f := c / n
				// 5 standard errors of a binomial proportion.
				tol := 5*math.Sqrt(tc.want[i]*(1-tc.want[i])/n) + 1e-12
				if math.Abs(f-tc.want[i]) > tol {
					t.Errorf("token %d drawn with frequency %.4f, want %.4f ± %.4f", i, f, tc.want[i], tol)
				}
			}
		})
	}
}

func renorm(p []float64, keep []int) []float64 {
	out := make([]float64, len(p))
	var z float64
	for _, i := range keep {
		z += p[i]
	}
	for _, i := range keep {
		out[i] = p[i] / z
	}
	return out
}

func TestSampleReproducible(t *testing.T) {
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)))
	}
	probs := f32s(softmax(logits, 1.3))
	draw := func(seed uint64, prompt, sample int) []int {
		rng := rowRNG(seed, prompt, sample)
		var pk picker
		out := make([]int, 50)
		for i := range out {
			out[i] = pk.sample(probs, nil, sum(probs), Sampling{Temperature: 1.3, TopK: 100, TopP: 0.9}, rng)
		}
		return out
	}
	a, b := draw(7, 1, 2), draw(7, 1, 2)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("same seed drew %v then %v", a, b)
		}
	}
	c := draw(7, 1, 3)
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Fatal("two samples of the same prompt drew identical streams")
	}
}

func TestTopKOrderAndTies(t *testing.T) {
	logits := []float32{3, 1, 3, 2, 5, 2}
	got := topK(nil, logits, 4)
	want := []int32{4, 0, 2, 3}
	for i, c := range got {
		if c.id != want[i] {
			t.Fatalf("topK = %v, want ids %v", got, want)
		}
	}
}

func TestSamplingValidate(t *testing.T) {
	// A temperature under MinTemperature overflows the head's float32 1/τ:
	// it was run and failed as non-finite logits blamed on the weights.
	for _, s := range []Sampling{{Temperature: math.NaN()}, {Temperature: 1e-39}, {Temperature: 1e-300}, {TopK: -1}, {TopP: 1.5}, {TopP: -0.1}} {
		if s.validate() == nil {
			t.Errorf("%+v accepted", s)
		}
	}
	for _, s := range []Sampling{{}, {Temperature: MinTemperature}, {Temperature: 2}} {
		if err := s.validate(); err != nil {
			t.Errorf("%+v: %v", s, err)
		}
	}
}

func f32s(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// The decode head computes what the Go reference computes.
func TestDecodeHead(t *testing.T) {
	const B, V = 3, 50000
	logits := make([]float32, B*V)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)*0.37) * 6)
	}
	logits[V+777] = 9 // a clear winner in row 1
	m := &Model{label: "head test", Layout: Layout{Vocab: V}}
	defer func() {
		for _, h := range m.heads {
			h.close()
		}
	}()
	for _, k := range []headKind{{}, {logProbs: true}, {sample: true, tempered: true, logProbs: true}, {sample: true}} {
		h, err := m.headFor(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := h.run(logits, B, 0.5); err != nil {
			t.Fatal(err)
		}
		for r := 0; r < B; r++ {
			row := logits[r*V : (r+1)*V]
			if !k.sample {
				if want, _ := argmax(row); h.argmax(r, row) != want {
					t.Errorf("%+v row %d: argmax %d, want %d", k, r, h.argmax(r, row), want)
				}
			} else {
				temp := 1.0
				if k.tempered {
					temp = 2
				}
				want := softmax(row, temp)
				for v := range want {
					if d := math.Abs(float64(h.probs[r*V+v]) - want[v]); d > 1e-6 {
						t.Fatalf("%+v row %d token %d: prob %v, want %v", k, r, v, h.probs[r*V+v], want[v])
					}
				}
			}
			if k.rawLogProbs() {
				p := softmax(row, 1)
				for v := range p {
					if d := math.Abs(float64(h.logp[r*V+v]) - math.Log(p[v])); d > 2e-5 {
						t.Fatalf("%+v row %d token %d: log-prob %v, want %v", k, r, v, h.logp[r*V+v], math.Log(p[v]))
					}
				}
			}
		}
	}
}

// sum adds a row with four accumulators (independent adds overlap).
func sum(v []float32) float64 {
	var a, b, c, d float64
	n := len(v) &^ 3
	for i := 0; i < n; i += 4 {
		a += float64(v[i])
		b += float64(v[i+1])
		c += float64(v[i+2])
		d += float64(v[i+3])
	}
	for _, x := range v[n:] {
		a += float64(x)
	}
	return a + b + c + d
}

// argmax returns the first index of the largest value (the reference for the head's ArgMax).
func argmax(v []float32) (int, float64) {
	best, mx := 0, v[0]
	for i, x := range v {
		if x > mx {
			best, mx = i, x
		}
	}
	return best, float64(mx)
}

func TestArgmaxAt(t *testing.T) {
	nan := float32(math.NaN())
	for _, tc := range []struct {
		row  []float32
		mx   float32
		want int
	}{{[]float32{1, 3, 2, 3}, 3, 1}, {[]float32{1, nan, 3, 2}, nan, 2}, {[]float32{nan, 1}, nan, 1}} {
		if got := argmaxAt(tc.row, tc.mx); got != tc.want {
			t.Errorf("argmaxAt(%v, %v) = %d, want %d", tc.row, tc.mx, got, tc.want)
		}
	}
}

// The block-maxima argmax is the first position of the row's max, ties
// within and across blocks included, for a vocabulary with blocks and one
// without; a NaN in the row makes the row max NaN (finite rejects it).
func TestHeadArgmaxBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, V := range []int{30030, 30011} {
		w := maxWidth(V)
		if (w > 1) != (blockLen(V) > 0) {
			t.Fatalf("V %d: %d maxima a row, blockLen %d", V, w, blockLen(V))
		}
		for trial := 0; trial < 200; trial++ {
			row := make([]float32, V)
			for i := range row {
				row[i] = float32(rng.IntN(50)) // many ties
			}
			switch trial % 4 {
			case 1: // the max in two blocks, the later one written first
				row[V-3], row[rng.IntN(V-3)] = 60, 60
			case 2: // the max twice in one block
				i := rng.IntN(V - 1)
				row[i], row[i+1] = 61, 61
			}
			h := &headOut{kind: headKind{}, mx: make([]float32, w), mxw: w}
			blk := V / w
			for j := range h.mx {
				h.mx[j] = slices.Max(row[j*blk : (j+1)*blk])
			}
			if want, _ := argmax(row); h.argmax(0, row) != want {
				t.Fatalf("V %d trial %d: argmax %d, want %d", V, trial, h.argmax(0, row), want)
			}
			if !h.finite(0, V) {
				t.Fatalf("V %d trial %d: a finite row is not finite", V, trial)
			}
		}
		h := &headOut{kind: headKind{}, mx: make([]float32, w), mxw: w}
		h.mx[w-1] = float32(math.NaN())
		if w > 1 && h.finite(0, V) {
			t.Fatalf("V %d: a NaN block max passes finite", V)
		}
	}
}

// scan agrees with a plain running sum (up to float rounding at block edges).
func TestScanBlocked(t *testing.T) {
	rng := rowRNG(3, 0, 0)
	probs := make([]float32, 1000)
	var z float64
	for i := range probs {
		if i%7 != 0 {
			probs[i] = rng.Float32()
		}
		z += float64(probs[i])
	}
	for k := 0; k < 2000; k++ {
		u := rng.Float64() * z
		want, acc := -1, u
		for i, x := range probs {
			acc -= float64(x)
			if acc < 0 {
				want = i
				break
			}
		}
		got := scan(probs, u)
		if got != want && math.Abs(u-prefix(probs, want)) > 1e-4 && math.Abs(u-prefix(probs, want+1)) > 1e-4 {
			t.Fatalf("scan(u=%v) = %d, want %d", u, got, want)
		}
	}
	if got := scan(probs, z*2); probs[got] == 0 || got < 990 {
		t.Fatalf("u past the total: %d", got)
	}
}

func prefix(p []float32, n int) float64 {
	var s float64
	for _, x := range p[:n] {
		s += float64(x)
	}
	return s
}

// TestDecodeHeadSplitIdentical: the head split over goroutines gives
// bit for bit what one run over all rows gives, for every head kind, with
// a vocabulary without blocks (30011, prime: row sums) and one with them
// (30030: block sums).
func TestDecodeHeadSplitIdentical(t *testing.T) {
	for _, V := range []int{30011, 30030} {
		t.Run(fmt.Sprintf("vocab=%d", V), func(t *testing.T) { decodeHeadSplitIdentical(t, V) })
	}
}

func decodeHeadSplitIdentical(t *testing.T, V int) {
	const B = 5
	logits := make([]float32, B*V)
	for i := range logits {
		logits[i] = float32(math.Sin(float64(i)*0.29) * 7)
	}
	invT := []float32{1, 0.5, 2, 1, 1.25}
	one := &Model{label: "one part", Layout: Layout{Vocab: V}, sessOpts: ort.Options{IntraOpThreads: 1}}
	three := &Model{label: "three parts", Layout: Layout{Vocab: V}, sessOpts: ort.Options{IntraOpThreads: 3}}
	defer func() {
		for _, m := range []*Model{one, three} {
			for _, h := range m.heads {
				h.close()
			}
		}
	}()
	kinds := []headKind{{}, {logProbs: true}, {sample: true}, {sample: true, logProbs: true},
		{sample: true, tempered: true, logProbs: true}, {sample: true, tempered: true, perRow: true, logProbs: true}}
	for _, k := range kinds {
		var outs [2]*head
		for i, m := range []*Model{one, three} {
			h, err := m.headFor(k)
			if err != nil {
				t.Fatal(err)
			}
			if k.perRow {
				err = h.runRows(logits, B, invT)
			} else {
				err = h.run(logits, B, 0.8)
			}
			if err != nil {
				t.Fatal(err)
			}
			outs[i] = h
		}
		if outs[1].par != 3 {
			t.Fatalf("head of a 3-thread model splits over %d goroutines", outs[1].par)
		}
		if k.sample && (len(outs[0].blocks) > 0) != (blockLen(V) > 0) {
			t.Fatalf("%+v: %d block sums for a vocabulary of %d", k, len(outs[0].blocks), V)
		}
		for _, c := range []struct {
			name string
			a, b []float32
		}{{"row max", outs[0].mx, outs[1].mx}, {"probs", outs[0].probs, outs[1].probs},
			{"sums", outs[0].sums, outs[1].sums}, {"block sums", outs[0].blocks, outs[1].blocks},
			{"log-probs", outs[0].logp, outs[1].logp}} {
			if len(c.a) != len(c.b) {
				t.Fatalf("%+v %s: %d values split, %d whole", k, c.name, len(c.b), len(c.a))
			}
			for i := range c.a {
				if math.Float32bits(c.a[i]) != math.Float32bits(c.b[i]) {
					t.Fatalf("%+v %s[%d]: %v split, %v whole", k, c.name, i, c.b[i], c.a[i])
				}
			}
		}
	}
}
