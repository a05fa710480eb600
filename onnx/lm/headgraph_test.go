package lm

import (
	"context"
	"fmt"
	"math"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// graphHeadModel is a small llama with a vocabulary large enough for ORT's
// vectorized and threaded kernel paths, on 2 threads.
func graphHeadModel(t *testing.T) *Model {
	return graphHeadModelV(t, 30011)
}

// graphHeadModelV is graphHeadModel with a vocabulary of V: 30011 is prime
// (the head has no block sums), 30030 has blocks of 182 (blockdraw.go).
func graphHeadModelV(t *testing.T, V int) *Model {
	t.Helper()
	pad := int64(0)
	c := Config{Arch: Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, Vocab: V, MaxPositions: 64, Seed: 3, InitStd: 0.15, EOS: 2, BOS: 1, Pad: &pad}
	m := loadBuilt(t, c, LoadOptions{Session: ort.Options{IntraOpThreads: 2}})
	if !m.Layout.HasDecodeHead {
		t.Fatal("Load did not add the decode head to the graph")
	}
	return m
}

// TestGraphHeadMatchesSeparateHead: the head in the model's graph computes
// what the separate head session computes on the same logits, bit for bit,
// for every kind the generators use (so a wrong If branch — probs without the
// temperature, a log-softmax left off — fails), and the outputs a kind does
// not need are empty (their branch was off); with the 30030 vocabulary the
// block sums too.
func TestGraphHeadMatchesSeparateHead(t *testing.T) {
	for _, V := range []int{30011, 30030} {
		t.Run(fmt.Sprintf("vocab=%d", V), func(t *testing.T) { graphHeadMatchesSeparateHead(t, graphHeadModelV(t, V)) })
	}
}

func graphHeadMatchesSeparateHead(t *testing.T, m *Model) {
	prompts := [][]int64{{1, 5, 9, 14, 3}, {1, 40, 41}, {1, 7, 8, 9}, {1, 2}, {1, 300, 301, 302, 303}}
	B, V := len(prompts), m.Layout.Vocab
	rowInv := []float32{1, 0.5, 2, 1, 1.25}
	kinds := []headKind{{}, {logProbs: true}, {sample: true}, {sample: true, logProbs: true},
		{sample: true, tempered: true}, {sample: true, tempered: true, logProbs: true},
		{sample: true, tempered: true, perRow: true}, {sample: true, tempered: true, perRow: true, logProbs: true}}
	for _, k := range kinds {
		// Untempered kinds get an inverse temperature too, which the graph
		// must ignore: the separate head has no such input.
		q := graphHeadReq{kind: k, inv: 0.5}
		switch {
		case k.perRow:
			q.rowInv = rowInv
		case k.tempered:
			q.inv = 1 / 0.7
		}
		m.mu.Lock()
		g, logits, d := graphHeadStep(t, m, prompts, &q)
		in, err := m.lastHead(g, q, logits[:B*V], B, &d.Head)
		if err != nil {
			t.Fatal(err)
		}
		inGraph := *in // the workspace's buffers: the separate head writes its own
		g.headRan = false
		sep, err := m.lastHead(g, q, logits[:B*V], B, &d.Head)
		if err != nil {
			t.Fatal(err)
		}
		g.release()
		m.mu.Unlock()

		want := func(on bool, n int) int {
			if on {
				return n
			}
			return 0
		}
		for _, c := range []struct {
			name     string
			in, sep  []float32
			computed bool
			n        int
		}{
			{"row max", inGraph.mx, sep.mx, k.rowMax(), B * maxWidth(V)},
			{"probs", inGraph.probs, sep.probs, k.sample, B * V},
			{"sums", inGraph.sums, sep.sums, k.sample && blockLen(V) == 0, B},
			{"log-probs", inGraph.logp, sep.logp, k.rawLogProbs(), B * V},
			{"block sums", inGraph.blocks, sep.blocks, k.sample && blockLen(V) > 0, B * V / max(blockLen(V), 1)},
		} {
			name := fmt.Sprintf("%+v %s", k, c.name)
			if len(c.in) != want(c.computed, c.n) {
				t.Fatalf("%s: %d values in the graph, want %d (its If branch was on when it should not be, or off)", name, len(c.in), want(c.computed, c.n))
			}
			if !c.computed {
				continue
			}
			if len(c.sep) != c.n {
				t.Fatalf("%s: %d values from the separate head, want %d", name, len(c.sep), c.n)
			}
			for i := range c.sep {
				if math.Float32bits(c.in[i]) != math.Float32bits(c.sep[i]) {
					t.Fatalf("%s[%d]: %v in the graph, %v in the separate head", name, i, c.in[i], c.sep[i])
				}
			}
		}
	}
}

// graphHeadStep prefills prompts and runs one decode step (ids 10, 11, …)
// with the in-graph head computing q; the caller holds m.mu and releases g.
func graphHeadStep(t *testing.T, m *Model, prompts [][]int64, q *graphHeadReq) (*gen, []float32, *Stats) {
	t.Helper()
	B := len(prompts)
	g, err := m.newGen(B, B, 16)
	if err != nil {
		t.Fatal(err)
	}
	st := &Stats{}
	if _, _, _, err := g.prefill(context.Background(), prompts, 0, 0, &st.PrefillORT); err != nil {
		t.Fatal(err)
	}
	ids := g.ids(1)
	for r := range ids {
		ids[r] = int64(10 + r)
	}
	g.head = q
	logits, K, err := g.forward(context.Background(), 1, 1, &st.DecodeORT)
	if err != nil {
		t.Fatal(err)
	}
	if K != 1 || !g.headRan {
		t.Fatalf("%+v: decode run kept %d columns, head ran %v", q.kind, K, g.headRan)
	}
	return g, logits, st
}

// TestGraphHeadGenerateSame: Generate with the head in the graph gives the
// tokens and log-probs it gives with the separate head, greedy and sampled
// (untempered, tempered, top-p), groups sharing a prompt included; with the
// 30030 vocabulary the plain draws in the graph go over block sums.
func TestGraphHeadGenerateSame(t *testing.T) {
	for _, V := range []int{30011, 30030} {
		t.Run(fmt.Sprintf("vocab=%d", V), func(t *testing.T) { graphHeadGenerateSame(t, graphHeadModelV(t, V)) })
	}
}

func graphHeadGenerateSame(t *testing.T, m *Model) {
	prompts := [][]int64{{1, 5, 9, 14, 3}, {1, 40, 41}, {1, 7}}
	for _, s := range []Sampling{{}, {Temperature: 1}, {Temperature: 0.7}, {Temperature: 1.3, TopP: 0.9}} {
		for _, noLP := range []bool{false, true} {
			o := GenerateOptions{MaxNewTokens: 9, NumGenerations: 2, Sampling: s, Seed: 5, IgnoreEOS: true, NoLogProbs: noLP}
			var got [2][]Completion
			for i, separate := range []bool{false, true} {
				m.separateHead = separate
				c, _, err := m.Generate(context.Background(), prompts, o)
				m.separateHead = false
				if err != nil {
					t.Fatal(err)
				}
				got[i] = c
			}
			name := fmt.Sprintf("%+v, no log-probs %v", s, noLP)
			for r := range got[0] {
				a, b := got[0][r], got[1][r]
				if !equalIDs(a.Tokens, b.Tokens) {
					t.Fatalf("%s row %d: tokens %v in the graph, %v separate", name, r, a.Tokens, b.Tokens)
				}
				if len(a.LogProbs) != len(b.LogProbs) {
					t.Fatalf("%s row %d: %d log-probs in the graph, %d separate", name, r, len(a.LogProbs), len(b.LogProbs))
				}
				for i := range a.LogProbs {
					if math.Float32bits(a.LogProbs[i]) != math.Float32bits(b.LogProbs[i]) {
						t.Fatalf("%s row %d token %d: log-prob %v in the graph, %v separate", name, r, i, a.LogProbs[i], b.LogProbs[i])
					}
				}
			}
		}
	}
}
