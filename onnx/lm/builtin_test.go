package lm

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/ort"
)

func init() {
	// Tests run real ONNX Runtime: fail loudly when it is missing.
	if err := ort.Init(""); err != nil {
		panic("onnx/lm tests need ONNX Runtime (run `make setup`): " + err.Error())
	}
}

// testConfigs are small built-ins of both families. A larger init scale
// than training's 0.02 makes the distributions peaked, so greedy tokens and
// log-probs actually discriminate.
func testConfigs() map[string]Config {
	pad := int64(0)
	return map[string]Config{
		"gpt2":  {Arch: GPT2, Layers: 2, DModel: 64, Heads: 4, Vocab: 97, MaxPositions: 64, Seed: 1, InitStd: 0.15, EOS: 2, BOS: 1, Pad: &pad},
		"llama": {Arch: Llama, Layers: 2, DModel: 64, Heads: 4, KVHeads: 2, Vocab: 101, MaxPositions: 64, Seed: 2, InitStd: 0.15, EOS: 2, BOS: 1, Pad: &pad},
	}
}

func buildModel(t testing.TB, c Config) *Model {
	t.Helper()
	hc := &HFConfig{}
	raw := HFConfigFor(c)
	hc.MaxPositions = c.MaxPositions
	hc.VocabSize = raw["vocab_size"].(int)
	hc.EOSTokenID = TokenIDs{c.EOS}
	return loadBuilt(t, c, LoadOptions{Config: hc, Session: ort.Options{IntraOpThreads: 1}})
}

// loadBuilt builds c and loads it with opts; the model closes with the test.
func loadBuilt(t testing.TB, c Config, opts LoadOptions) *Model {
	t.Helper()
	pm, err := Build(c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ir.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	m, err := LoadBytes(b, string(c.Arch)+" test model", opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

var testPrompts = [][]int64{{1, 5, 9, 14, 3}, {1, 40, 41, 42, 43, 44, 45, 46, 47}, {1, 7, 8}}

// incremental runs prompts then fixed continuation tokens through the
// engine's cache path (prefill in chunks of chunk columns) and returns the
// logits at every real position, per row.
func incremental(t *testing.T, m *Model, prompts, conts [][]int64, chunk int) [][][]float32 {
	t.Helper()
	B, T0, N := len(prompts), 0, len(conts[0])
	for _, p := range prompts {
		T0 = max(T0, len(p))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	g, err := m.newGen(B, B, T0+N)
	if err != nil {
		t.Fatal(err)
	}
	defer g.release()
	V := m.Layout.Vocab
	out := make([][][]float32, B)
	for r, p := range prompts {
		g.pad[r] = T0 - len(p)
	}
	var dur time.Duration
	for c0 := 0; c0 < T0; c0 += chunk {
		T := min(chunk, T0-c0)
		ids := g.ids(T)
		for r, p := range prompts {
			for tt := 0; tt < T; tt++ {
				if j := c0 + tt - g.pad[r]; j >= 0 {
					ids[r*T+tt] = p[j]
				} else {
					ids[r*T+tt] = 0
				}
			}
		}
		lg, _, err := g.forward(context.Background(), T, T, &dur)
		if err != nil {
			t.Fatal(err)
		}
		for r := range prompts {
			for tt := 0; tt < T; tt++ {
				if c0+tt >= g.pad[r] {
					out[r] = append(out[r], append([]float32(nil), lg[(r*T+tt)*V:(r*T+tt+1)*V]...))
				}
			}
		}
	}
	for s := 0; s < N; s++ {
		ids := g.ids(1)
		for r := range prompts {
			ids[r] = conts[r][s]
		}
		lg, _, err := g.forward(context.Background(), 1, 1, &dur)
		if err != nil {
			t.Fatal(err)
		}
		for r := range prompts {
			out[r] = append(out[r], append([]float32(nil), lg[r*V:(r+1)*V]...))
		}
	}
	return out
}

// full is the one-pass forward of prompt+continuation, per row, real positions only.
func full(t *testing.T, m *Model, seqs [][]int64) [][][]float32 {
	t.Helper()
	lg, pad, err := m.Forward(context.Background(), seqs, 0)
	if err != nil {
		t.Fatal(err)
	}
	T := 0
	for _, s := range seqs {
		T = max(T, len(s))
	}
	V := m.Layout.Vocab
	out := make([][][]float32, len(seqs))
	for r := range seqs {
		for tt := pad[r]; tt < T; tt++ {
			out[r] = append(out[r], lg[(r*T+tt)*V:(r*T+tt+1)*V])
		}
	}
	return out
}

func maxAbsDiff(a, b [][][]float32) float64 {
	var d float64
	for r := range a {
		for i := range a[r] {
			for j := range a[r][i] {
				d = math.Max(d, math.Abs(float64(a[r][i][j])-float64(b[r][i][j])))
			}
		}
	}
	return d
}

func concat(a, b []int64) []int64 { return append(append([]int64(nil), a...), b...) }

// checkCacheMatchesFull is the first criterion for any model.
func checkCacheMatchesFull(t *testing.T, m *Model, prompts [][]int64) {
	conts := make([][]int64, len(prompts))
	seqs := make([][]int64, len(prompts))
	V := int64(m.Layout.Vocab)
	for r := range prompts {
		for s := 0; s < 6; s++ {
			conts[r] = append(conts[r], (int64(r)*13+int64(s)*7+3)%V)
		}
		seqs[r] = concat(prompts[r], conts[r])
	}
	ref := full(t, m, seqs)
	for _, chunk := range []int{1 << 20, 4, 1} {
		got := incremental(t, m, prompts, conts, chunk)
		for r := range got {
			if len(got[r]) != len(ref[r]) {
				t.Fatalf("row %d: %d positions incrementally, %d in full", r, len(got[r]), len(ref[r]))
			}
		}
		d := maxAbsDiff(got, ref)
		t.Logf("prefill chunk %d: max |cache - full| = %.2e", chunk, d)
		if d > 1e-4 {
			t.Errorf("prefill chunk %d: incremental logits differ from the full forward by %.3e (> 1e-4)", chunk, d)
		}
	}
}

func TestBuiltinCacheMatchesFullForward(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			checkCacheMatchesFull(t, buildModel(t, c), testPrompts)
		})
	}
}

// Left padding must not change a row: each row of the padded batch equals
// that sequence run alone.
func TestBuiltinPaddingInvariance(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := buildModel(t, c)
			batch := full(t, m, testPrompts)
			for r, p := range testPrompts {
				alone := full(t, m, [][]int64{p})
				if d := maxAbsDiff(alone, batch[r:r+1]); d > 1e-4 {
					t.Errorf("row %d: padded batch differs from the sequence alone by %.3e", r, d)
				}
			}
		})
	}
}

func logSoftmaxAt(row []float32, tok int64) float64 {
	mx := math.Inf(-1)
	for _, v := range row {
		mx = math.Max(mx, float64(v))
	}
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v) - mx)
	}
	return float64(row[tok]) - mx - math.Log(z)
}

func TestBuiltinGenerateLogProbsAndReproducibility(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := buildModel(t, c)
			for _, s := range []Sampling{{Temperature: 0.9, TopK: 40, TopP: 0.95}, {Temperature: 1}} {
				checkSampling(t, m, s)
			}
		})
	}
}

// checkSampling: reproducible per seed, distinct across samples and seeds,
// per-sequence EOS, and log-probs equal to a full forward's log-softmax.
func checkSampling(t *testing.T, m *Model, s Sampling) {
	t.Run(fmt.Sprintf("T=%v,k=%d,p=%v", s.Temperature, s.TopK, s.TopP), func(t *testing.T) {
		{
			o := GenerateOptions{MaxNewTokens: 12, NumGenerations: 3, Sampling: s, Seed: 11, IgnoreEOS: true}
			a, st, err := m.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(a) != len(testPrompts)*3 || st.GeneratedTokens != len(a)*12 {
				t.Fatalf("%d completions, %d tokens; want %d and %d", len(a), st.GeneratedTokens, len(testPrompts)*3, len(testPrompts)*3*12)
			}
			b, _, err := m.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			distinct := false
			for i := range a {
				if a[i].Prompt != i/3 || a[i].Sample != i%3 {
					t.Fatalf("completion %d is (prompt %d, sample %d)", i, a[i].Prompt, a[i].Sample)
				}
				for j := range a[i].Tokens {
					if a[i].Tokens[j] != b[i].Tokens[j] || a[i].LogProbs[j] != b[i].LogProbs[j] {
						t.Fatalf("completion %d differs between two runs with seed 11: %v vs %v", i, a[i].Tokens, b[i].Tokens)
					}
				}
				if i%3 > 0 && !equalIDs(a[i].Tokens, a[i-1].Tokens) {
					distinct = true
				}
			}
			if !distinct {
				t.Error("the samples of every group are identical: sampling is not sampling")
			}
			o.Seed = 12
			c2, _, err := m.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			same := true
			for i := range a {
				same = same && equalIDs(a[i].Tokens, c2[i].Tokens)
			}
			if same {
				t.Error("seeds 11 and 12 drew the same completions")
			}

			// With EOS ids that end some completions early (dropping their
			// rows from the batch), the others are unchanged.
			o.Seed, o.IgnoreEOS, o.EOS = 11, false, nil
			isEOS := map[int64]bool{}
			for i := 0; i < 6; i++ {
				o.EOS = append(o.EOS, a[i].Tokens[1+i%3])
				isEOS[a[i].Tokens[1+i%3]] = true
			}
			e, st2, err := m.Generate(context.Background(), testPrompts, o)
			if err != nil {
				t.Fatal(err)
			}
			if st2.Compactions == 0 {
				t.Error("no finished rows were dropped")
			}
			for i := range a {
				n, why := len(a[i].Tokens), FinishLength
				for j, tok := range a[i].Tokens {
					if isEOS[tok] {
						n, why = j+1, FinishEOS
						break
					}
				}
				if !equalIDs(e[i].Tokens, a[i].Tokens[:n]) || e[i].Finish != why {
					t.Errorf("completion %d with EOS %v: %v (%s), want %v (%s)", i, o.EOS, e[i].Tokens, e[i].Finish, a[i].Tokens[:n], why)
				}
			}

			// Log-probs against log-softmax of one full forward of prompt+completion.
			seqs := make([][]int64, len(a))
			for i, cp := range a {
				seqs[i] = concat(testPrompts[cp.Prompt], cp.Tokens)
			}
			ref := full(t, m, seqs)
			var worst float64
			for i, cp := range a {
				P := len(testPrompts[cp.Prompt])
				for j, tok := range cp.Tokens {
					want := logSoftmaxAt(ref[i][P-1+j], tok)
					worst = math.Max(worst, math.Abs(want-float64(cp.LogProbs[j])))
				}
			}
			t.Logf("max |log-prob - full forward log-softmax| = %.2e", worst)
			if worst > 1e-4 {
				t.Errorf("generation log-probs differ from the full forward's log-softmax by %.3e (> 1e-4)", worst)
			}
		}
	})
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Greedy decoding through the cache equals greedy decoding by full forwards,
// and each sequence stops on its own (EOS, stop string, length) without
// changing the others.
func TestBuiltinGreedyAndStopping(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := buildModel(t, c)
			ctx := context.Background()
			ref, _, err := m.Generate(ctx, testPrompts, GenerateOptions{MaxNewTokens: 10, IgnoreEOS: true, NoLogProbs: true})
			if err != nil {
				t.Fatal(err)
			}
			// Greedy by repeated full forwards.
			for r, p := range testPrompts {
				seq := append([]int64(nil), p...)
				for s := 0; s < 10; s++ {
					lg := full(t, m, [][]int64{seq})[0]
					best, _ := argmax(lg[len(lg)-1])
					seq = append(seq, int64(best))
				}
				if !equalIDs(seq[len(p):], ref[r].Tokens) {
					t.Fatalf("row %d: cached greedy %v, full-forward greedy %v", r, ref[r].Tokens, seq[len(p):])
				}
				if ref[r].Finish != FinishLength || ref[r].LogProbs != nil {
					t.Fatalf("row %d: finish %q, log-probs %v; want length and none", r, ref[r].Finish, ref[r].LogProbs)
				}
			}
			// A group shares its prompt's prefill: greedy samples of a
			// group equal the prompt's own greedy completion.
			grp, _, err := m.Generate(ctx, testPrompts, GenerateOptions{MaxNewTokens: 10, IgnoreEOS: true, NumGenerations: 3})
			if err != nil {
				t.Fatal(err)
			}
			for i, c := range grp {
				if !equalIDs(c.Tokens, ref[i/3].Tokens) {
					t.Errorf("group row %d (prompt %d): %v, want %v", i, i/3, c.Tokens, ref[i/3].Tokens)
				}
				if d := maxDiff(c.LogProbs, grp[i/3*3].LogProbs); d > 1e-5 {
					t.Errorf("group row %d: log-probs differ from its group's first by %.2e", i, d)
				}
			}

			// Row 0 ends at its 3rd token (made EOS); row 1 at a stop string
			// spanning its 5th and 6th tokens; row 2 runs to the length limit.
			eos := ref[0].Tokens[2]
			stop := textOf(ref[1].Tokens[4:6])
			detok := func(ids []int64) string { return textOf(ids) }
			got, st, err := m.Generate(ctx, testPrompts, GenerateOptions{MaxNewTokens: 10, EOS: []int64{eos},
				StopStrings: []string{stop}, Detokenize: detok})
			if err != nil {
				t.Fatal(err)
			}
			if st.Compactions == 0 {
				t.Error("finished rows were never dropped from the batch")
			}
			want := func(r int) (int, FinishReason) {
				n, why := 10, FinishLength
				for j, tok := range ref[r].Tokens {
					if tok == eos {
						return j + 1, FinishEOS
					}
					if j >= 1 && strings.Contains(textOf(ref[r].Tokens[:j+1]), stop) {
						return j + 1, FinishStop
					}
				}
				return n, why
			}
			for r := range testPrompts {
				n, why := want(r)
				if got[r].Finish != why || !equalIDs(got[r].Tokens, ref[r].Tokens[:n]) {
					t.Errorf("row %d: got %v (%s), want %v (%s)", r, got[r].Tokens, got[r].Finish, ref[r].Tokens[:n], why)
				}
				if why == FinishStop && got[r].Stop != stop {
					t.Errorf("row %d: stop %q, want %q", r, got[r].Stop, stop)
				}
			}
			if got[0].Finish != FinishEOS {
				t.Errorf("row 0 did not stop on EOS: %+v", got[0])
			}
		})
	}
}

func textOf(ids []int64) string {
	s := ""
	for _, id := range ids {
		s += "<" + strconv.FormatInt(id, 10) + ">"
	}
	return s
}

// TestForwardRefusesIDsOutsideVocab: Forward checks ids as Generate does. A
// negative id once ran (ORT's Gather reads it from the end of the
// embedding) and returned another token's logits without a word.
func TestForwardRefusesIDsOutsideVocab(t *testing.T) {
	m := buildModel(t, testConfigs()["llama"]) // vocab 101
	for want, c := range map[string]struct {
		seqs [][]int64
		pad  int64
	}{
		"sequence 1 token 2: id -1 outside the model's vocab [0, 101)":  {[][]int64{{3, 4}, {3, 4, -1}}, 0},
		"sequence 0 token 0: id 101 outside the model's vocab [0, 101)": {[][]int64{{101}}, 0},
		"pad token -1 outside the vocab [0, 101)":                       {[][]int64{{3, 4}}, -1},
	} {
		if _, _, err := m.Forward(context.Background(), c.seqs, c.pad); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want an error saying %q", err, want)
		}
	}
}
