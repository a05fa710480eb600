package lm

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/tagpr/tagpr/onnx/ort"
)

// GenerateOptions control one batched generation call.
type GenerateOptions struct {
	// MaxNewTokens bounds every completion (required, > 0).
	MaxNewTokens int
	// NumGenerations is the number of completions per prompt (a GRPO group);
	// 0 means 1.
	NumGenerations int
	Sampling
	// Seed makes sampling reproducible: each completion draws from its own
	// stream, fixed by Seed and its (prompt, sample) position.
	Seed uint64
	// EOS ends a completion (the EOS token is kept, with its log-prob).
	// nil: the model's generation_config.json / config.json ids.
	EOS []int64
	// IgnoreEOS generates MaxNewTokens whatever comes (benchmarks).
	IgnoreEOS bool
	// Pad is the token fed for left padding and to finished rows; nil: the
	// model's pad_token_id, else its first EOS id, else 0. Its value never
	// reaches the model's output: padded positions are masked out.
	Pad *int64
	// StopStrings end a completion when its decoded text contains one;
	// Detokenize (required with StopStrings) turns ids into text. Only the
	// completion's last len(longest stop)+8 tokens are decoded each step.
	StopStrings []string
	Detokenize  func(ids []int64) string
	// NoLogProbs skips the per-token log-probabilities (saves a pass over
	// the vocabulary per token).
	NoLogProbs bool
	// PrefillChunk caps the prompt columns per prefill run, which bounds the
	// prefill logits buffer (batch × chunk × vocab); 0 picks a chunk so
	// that buffer stays under 64 Mi floats.
	PrefillChunk int
}

// FinishReason says why a completion ended.
type FinishReason string

const (
	FinishEOS    FinishReason = "eos"
	FinishStop   FinishReason = "stop"
	FinishLength FinishReason = "length"
)

// Completion is one generated continuation.
type Completion struct {
	Prompt, Sample int // which prompt, and which of its NumGenerations
	Tokens         []int64
	// LogProbs[i] is log softmax(logits)[Tokens[i]] of the raw model
	// distribution (temperature 1, no top-k/top-p, no penalties), nil with
	// NoLogProbs.
	LogProbs []float32
	Finish   FinishReason
	Stop     string // the stop string matched, with FinishStop
}

// Stats time one generation call. Prefill and Decode are wall times of the
// two phases (including sampling and bookkeeping); the ORT fields are the
// time spent inside session runs alone, so Decode/DecodeORT is the
// engine's overhead factor.
type Stats struct {
	Sequences       int
	PromptTokens    int // real prompt tokens, without padding
	PaddedPrompt    int // prompt columns after left padding
	GeneratedTokens int
	PrefillRuns     int
	DecodeSteps     int
	RowSteps        int // batch rows summed over decode steps (finished rows are dropped)
	Compactions     int // times finished rows were dropped from the cache
	Prefill         time.Duration
	Decode          time.Duration
	PrefillORT      time.Duration
	DecodeORT       time.Duration
	// Head is the time in the separate decode head session (row max,
	// softmax, log-softmax over the vocabulary; see head.go), part of
	// Decode but not of the ORT fields. When the head is in the model's
	// graph (headgraph.go) only the first token uses it, and the decode
	// steps' head work is in DecodeORT.
	Head time.Duration
	// Pick is the Go side of choosing tokens (argmax position, sampling).
	Pick time.Duration
}

// Generate completes every prompt NumGenerations times in one batch:
// left-padded prefill of each prompt once, its cache copied to the rows of
// its group, then one decode run per new token over the KV cache, finished
// rows dropped as they pile up. Completions come prompt-major: index
// p*NumGenerations + g.
func (m *Model) Generate(ctx context.Context, prompts [][]int64, o GenerateOptions) ([]Completion, Stats, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var st Stats
	if err := m.checkGenerate(prompts, &o); err != nil {
		return nil, st, err
	}
	G := o.NumGenerations
	Bp, B := len(prompts), len(prompts)*G
	T0 := 0
	for _, p := range prompts {
		T0 = max(T0, len(p))
	}
	pad := *o.Pad
	// Each prompt is prefilled once; its cache is then copied to its G
	// sample rows (a group shares its prompt).
	g, err := m.newGen(Bp, B, T0+o.MaxNewTokens-1)
	if err != nil {
		return nil, st, err
	}
	defer g.release()

	// Rows are prompt-major; each row's left padding is fixed for the run.
	comps := make([]Completion, B)
	rngs := make([]*rand.Rand, B)
	for r := range comps {
		p, s := r/G, r%G
		comps[r] = Completion{Prompt: p, Sample: s, Tokens: make([]int64, 0, o.MaxNewTokens)}
		if !o.NoLogProbs {
			comps[r].LogProbs = make([]float32, 0, o.MaxNewTokens)
		}
		if !o.Greedy() {
			rngs[r] = rowRNG(o.Seed, p, s)
		}
	}
	// seen is each row's tokens for the penalties (nil: none apply).
	var seen []*seenTokens
	if o.penaltiesOn() {
		seen = make([]*seenTokens, B)
		for p, pr := range prompts {
			ids := promptIDs(pr)
			for s := 0; s < G; s++ {
				seen[p*G+s] = &seenTokens{prompt: ids}
			}
		}
	}
	for _, pr := range prompts {
		st.PromptTokens += len(pr)
	}
	st.Sequences, st.PaddedPrompt = B, T0

	start := time.Now()
	logits, lastT, runs, err := g.prefill(ctx, prompts, pad, o.PrefillChunk, &st.PrefillORT)
	st.PrefillRuns += runs
	if err != nil {
		return nil, st, err
	}
	if G > 1 {
		if err := g.expand(G); err != nil {
			return nil, st, err
		}
		logits, lastT = m.expandLast(logits, Bp, lastT, G), 1
	}
	st.Prefill = time.Since(start)

	start = time.Now()
	eos := map[int64]bool{}
	if !o.IgnoreEOS {
		for _, id := range o.EOS {
			eos[id] = true
		}
	}
	stopWin := 0
	for _, s := range o.StopStrings {
		stopWin = max(stopWin, len(s)+8)
	}
	V := m.Layout.Vocab
	// The batch shrinks as sequences finish: row[r] is the completion in
	// batch row r, and finished rows are dropped from the cache (see
	// compact) once enough of them pile up.
	row := make([]int, B)
	for r := range row {
		row[r] = r
	}
	done, active := make([]bool, B), B
	rp := newRowPicker(B)
	// The first token comes from the prefill's logits through the separate
	// head; the decode runs compute the head in the graph when it has one.
	hq := graphHeadReq{kind: headKind{sample: !o.Greedy(), tempered: !o.Greedy() && o.Temperature != 1, logProbs: !o.NoLogProbs}, inv: 1}
	if !o.Greedy() {
		hq.inv = float32(1 / o.Temperature)
	}
	if !m.separateHead {
		g.head = &hq
	}
	for step := 0; ; step++ {
		last := m.lastLogits(logits, len(row), lastT)
		h, err := m.lastHead(g, hq, last, len(row), &st.Head)
		if err != nil {
			return nil, st, err
		}
		for r := range row {
			if !done[r] && !h.finite(r, V) {
				return nil, st, errNonFinite(m.label, row[r], step)
			}
		}
		t1 := time.Now()
		par := threadsOf(m.sessOpts)
		if (len(h.blocks) > 0 && !o.topKOn(V) && !o.topPOn()) || (o.Greedy() && h.mxw > 1) {
			// The plain draw over block sums, and greedy's scan of one
			// block, take microseconds a row: a second goroutine would cost
			// more than it saves.
			par = 1
		}
		rp.pick(h, par, last, V, done, o.Sampling, float64(hq.inv), rngs, seen, !o.NoLogProbs)
		st.Pick += time.Since(t1)
		for r := range row {
			if done[r] {
				continue
			}
			tok, lp := rp.tok[r], rp.lp[r]
			c := &comps[row[r]]
			c.Tokens = append(c.Tokens, int64(tok))
			if !o.NoLogProbs {
				c.LogProbs = append(c.LogProbs, float32(lp))
			}
			if seen != nil {
				seen[r].add(tok)
			}
			st.GeneratedTokens++
			switch {
			case eos[int64(tok)]:
				c.Finish = FinishEOS
			case stopWin > 0 && matchStop(c, o.StopStrings, o.Detokenize, stopWin):
				c.Finish = FinishStop
			case len(c.Tokens) >= o.MaxNewTokens:
				c.Finish = FinishLength
			}
			if c.Finish != "" {
				done[r] = true
				active--
			}
		}
		if active == 0 {
			break
		}
		if active <= len(row)*3/4 {
			keep := make([]int, 0, active)
			for r := range row {
				if !done[r] {
					keep = append(keep, r)
				}
			}
			if err := g.compact(keep); err != nil {
				return nil, st, err
			}
			for j, r := range keep {
				row[j], rngs[j], done[j] = row[r], rngs[r], false
				if seen != nil {
					seen[j] = seen[r]
				}
			}
			row, rngs, done = row[:active], rngs[:active], done[:active]
			if seen != nil {
				seen = seen[:active]
			}
			st.Compactions++
		}
		ids := g.ids(1)
		for r := range row {
			if done[r] {
				ids[r] = pad
			} else {
				c := &comps[row[r]]
				ids[r] = c.Tokens[len(c.Tokens)-1]
			}
		}
		if logits, lastT, err = g.forward(ctx, 1, 1, &st.DecodeORT); err != nil {
			return nil, st, err
		}
		st.DecodeSteps++
		st.RowSteps += len(row)
	}
	st.Decode = time.Since(start)
	return comps, st, nil
}

// rowPicker turns a head run into each active row's token and log-prob:
// greedy rows find the head's row max, sampled rows draw from its
// probabilities. The rows are split over the goroutines the head runs on
// (each row's stream is its own, so the picks do not depend on the split).
type rowPicker struct {
	tok     []int
	lp      []float64
	pickers []picker // one per part
}

func newRowPicker(B int) *rowPicker {
	return &rowPicker{tok: make([]int, B), lp: make([]float64, B)}
}

// pick fills tok and lp for the rows not done; last is the [B,V] logits the
// head ran on (at inverse temperature inv); seen (nil: no penalties) is
// each row's tokens.
func (rp *rowPicker) pick(h *headOut, par int, last []float32, V int, done []bool, s Sampling, inv float64, rngs []*rand.Rand, seen []*seenTokens, withLP bool) {
	if len(rp.pickers) < par {
		rp.pickers = make([]picker, par)
	}
	splitRows(len(done), par, func(k, lo, hi int) {
		for r := lo; r < hi; r++ {
			if done[r] {
				continue
			}
			var sr *seenTokens
			if seen != nil {
				sr = seen[r]
			}
			row := last[r*V : (r+1)*V]
			rp.setToken(r, rp.pickers[k].pickToken(h, r, row, s, inv, rngs[r], sr), h, row, withLP)
		}
	})
}

// setToken records row r's token and, withLP, its raw log-prob (row is
// its logits).
func (rp *rowPicker) setToken(r, tok int, h *headOut, row []float32, withLP bool) {
	rp.tok[r] = tok
	V := len(row)
	switch {
	case !withLP:
	case h.kind.rawLogProbs():
		rp.lp[r] = float64(h.logp[r*V+tok])
	case h.probs[r*V+tok] == 0:
		// Drawn where the head's float32 probability underflowed: only
		// with penalties, which moved the mass there (sampleAdjusted).
		rp.lp[r] = rawLogProb(row, tok)
	default: // untempered sampling: probs is the model's distribution
		// A drawn token has probs > 0 here, so this is finite; the row
		// sum is the draw's.
		rp.lp[r] = math.Log(float64(h.probs[r*V+tok]) / h.rowSum(r, V))
	}
}

// lastLogits returns the logits of each row's last column as a contiguous
// [B,V] buffer: the run's own output when it had one column, else a copy.
func (m *Model) lastLogits(logits []float32, B, T int) []float32 {
	V := m.Layout.Vocab
	if T == 1 {
		return logits[:B*V]
	}
	m.ws.last = grow(m.ws.last, B*V)
	for r := 0; r < B; r++ {
		copy(m.ws.last[r*V:(r+1)*V], logits[(r*T+T-1)*V:(r*T+T)*V])
	}
	return m.ws.last
}

// matchStop decodes the completion's tail and looks for a stop string.
func matchStop(c *Completion, stops []string, detok func([]int64) string, win int) bool {
	tail := c.Tokens[max(0, len(c.Tokens)-win):]
	text := detok(tail)
	for _, s := range stops {
		if s != "" && strings.Contains(text, s) {
			c.Stop = s
			return true
		}
	}
	return false
}

func (m *Model) checkGenerate(prompts [][]int64, o *GenerateOptions) error {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("generate with %s: "+format, append([]any{m.label}, a...)...)
	}
	if m.Layout.Float != "float32" {
		return fail("generation runs float32 models; this one has %s logits and cache (float64 builds are for gradient checks)", m.Layout.Float)
	}
	if m.Layout.Vocab <= 0 {
		return fail("vocab size unknown: dim 2 of %q is symbolic and no config.json gives vocab_size", Logits)
	}
	if len(prompts) == 0 {
		return fail("no prompts")
	}
	if o.MaxNewTokens <= 0 {
		return fail("max_new_tokens is %d, want > 0", o.MaxNewTokens)
	}
	if o.NumGenerations < 0 {
		return fail("num_generations is %d, want >= 1", o.NumGenerations)
	}
	if o.NumGenerations == 0 {
		o.NumGenerations = 1
	}
	if err := o.Sampling.validate(); err != nil {
		return fail("%v", err)
	}
	if len(o.StopStrings) > 0 && o.Detokenize == nil {
		return fail("stop strings %q need a Detokenize callback", o.StopStrings)
	}
	if o.EOS == nil {
		o.EOS = m.DefaultEOS()
	}
	padFrom := ""
	if o.Pad == nil {
		p := m.DefaultPad()
		o.Pad = &p
		padFrom = " (the model's pad_token_id, else its first eos_token_id, from generation_config.json or config.json: correct the id there)"
	}
	V := int64(m.Layout.Vocab)
	if *o.Pad < 0 || *o.Pad >= V {
		return fail("pad token %d outside the vocab [0, %d)%s", *o.Pad, V, padFrom)
	}
	longest := 0
	for i, p := range prompts {
		if len(p) == 0 {
			return fail("prompt %d is empty (a causal LM needs at least one token, e.g. BOS)", i)
		}
		for j, id := range p {
			if id < 0 || id >= V {
				return fail("prompt %d token %d: id %d outside the model's vocab [0, %d)", i, j, id, V)
			}
		}
		longest = max(longest, len(p))
	}
	if c := m.Config; c != nil {
		maxPos := c.MaxPositions
		if maxPos == 0 {
			maxPos = c.NPositions
		}
		if maxPos > 0 && longest+o.MaxNewTokens > maxPos {
			return fail("longest prompt %d + max_new_tokens %d exceeds the model's %d positions (config.json)", longest, o.MaxNewTokens, maxPos)
		}
	}
	for _, name := range m.Layout.Extra {
		if !m.isBound(name) {
			return fail("input %q is not part of the causal-LM layout; bind it with Model.Bind before generating", name)
		}
	}
	return nil
}

// Forward runs the whole left-padded batch in one pass with an empty cache
// and returns the logits [B, T, V] (T the longest prompt) with each row's
// left padding. It is the reference incremental decoding is checked
// against, and a plain scorer.
func (m *Model) Forward(ctx context.Context, seqs [][]int64, pad int64) (logits []float32, padLen []int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.Layout.Float != "float32" {
		return nil, nil, fmt.Errorf("forward with %s: float32 models only (this one is %s)", m.label, m.Layout.Float)
	}
	T := 0
	V := int64(m.Layout.Vocab)
	for i, s := range seqs {
		if len(s) == 0 {
			return nil, nil, fmt.Errorf("forward with %s: sequence %d is empty", m.label, i)
		}
		// ORT's Gather would read a negative id from the end of the
		// embedding: another token's logits, without a word.
		for j, id := range s {
			if id < 0 || id >= V {
				return nil, nil, fmt.Errorf("forward with %s: sequence %d token %d: id %d outside the model's vocab [0, %d)", m.label, i, j, id, V)
			}
		}
		T = max(T, len(s))
	}
	if pad < 0 || pad >= V {
		return nil, nil, fmt.Errorf("forward with %s: pad token %d outside the vocab [0, %d)", m.label, pad, V)
	}
	if len(seqs) == 0 {
		return nil, nil, fmt.Errorf("forward with %s: no sequences", m.label)
	}
	for _, name := range m.Layout.Extra {
		if !m.isBound(name) {
			return nil, nil, fmt.Errorf("forward with %s: input %q must be bound with Model.Bind", m.label, name)
		}
	}
	g, err := m.newGen(len(seqs), len(seqs), T)
	if err != nil {
		return nil, nil, err
	}
	defer g.release()
	ids := g.ids(T)
	for r, s := range seqs {
		g.pad[r] = T - len(s)
		for t := 0; t < T; t++ {
			if j := t - g.pad[r]; j < 0 {
				ids[r*T+t] = pad
			} else {
				ids[r*T+t] = s[j]
			}
		}
	}
	var d time.Duration
	out, _, err := g.forward(ctx, T, T, &d)
	if err != nil {
		return nil, nil, err
	}
	return append([]float32(nil), out...), append([]int(nil), g.pad...), nil
}

// workspace holds generation buffers across calls so that repeated rollouts
// reuse memory instead of allocating hundreds of megabytes each time.
type workspace struct {
	kv     [2][][]float32 // ping-pong × (layer*2 + 0 key / 1 value)
	logits []float32
	last   []float32 // last-column logits after a multi-column run
	keep   []int64   // logits_to_keep (its own allocation: cgo refuses memory holding Go pointers)
	ids    []int64
	pos    []int64
	mask   []int64
	head   headBufs // the in-graph decode head's (headgraph.go)
}

func grow[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	return s[:n]
}

// gen is the state of one batched run: the cache lives in two ping-pong
// buffer sets; step s reads the past from one and ORT writes the present
// straight into the other, so no cache tensor is ever copied by Go.
type gen struct {
	m          *Model
	ws         *workspace
	dc         *devCache // the device-resident cache (generate_device.go), or nil
	B, H, D, V int
	capPos     int   // rows × positions each cache buffer holds
	P          int   // current past length
	cur        int   // ping-pong set holding the past
	pad        []int // left padding per row
	past       []*ort.Tensor[float32]
	in, out    []ort.Value
	head       *graphHeadReq // what the in-graph head computes (headgraph.go); nil: off
	headRan    bool          // the last run computed it
}

// newGen starts a run of B rows in the model's own workspace whose buffers
// hold up to capRows rows (see expand) of maxLen cache positions.
func (m *Model) newGen(B, capRows, maxLen int) (*gen, error) {
	if m.devs.on {
		return m.newDeviceGen(B, capRows)
	}
	return m.newGenIn(&m.ws, B, capRows, capRows*maxLen)
}

// newGenIn starts a run of B rows in ws, whose cache buffers are grown to
// hold capPos rows × positions; pad has room for capRows rows.
func (m *Model) newGenIn(ws *workspace, B, capRows, capPos int) (*gen, error) {
	lay := m.Layout
	g := &gen{m: m, ws: ws, B: B, H: lay.KVHeads, D: lay.HeadDim, V: lay.Vocab, capPos: capPos,
		pad: make([]int, capRows), in: make([]ort.Value, m.slot.nIn), out: make([]ort.Value, m.slot.nOut)}
	g.pad = g.pad[:B]
	n := capPos * g.H * g.D
	for s := 0; s < 2; s++ {
		ws.kv[s] = grow(ws.kv[s], 2*lay.Layers)
		for i := range ws.kv[s] {
			ws.kv[s][i] = grow(ws.kv[s][i], n)
		}
	}
	for name, v := range m.bound {
		for i, info := range m.sess.Inputs() {
			if info.Name == name {
				g.in[i] = v
			}
		}
	}
	// An empty past ([B,H,0,D]) is the first step.
	g.past = make([]*ort.Tensor[float32], 2*lay.Layers)
	for i := range g.past {
		t, err := ort.NewTensor([]int64{int64(B), int64(g.H), 0, int64(g.D)}, []float32{})
		if err != nil {
			g.release()
			return nil, fmt.Errorf("generate with %s: %w", m.label, err)
		}
		g.past[i] = t
	}
	return g, nil
}

// ids returns the input-id buffer for a run of T columns.
func (g *gen) ids(T int) []int64 {
	g.ws.ids = grow(g.ws.ids, g.B*T)
	return g.ws.ids
}

// prefill runs left-padded prompts (the gen's rows, in order) through an
// empty cache in column chunks of at most chunk columns (0: a chunk that
// keeps the logits buffer under 64 Mi floats when the model lacks
// logits_to_keep) and returns the logits of the last run, [B,lastT,V], whose
// last column is every prompt's next-token distribution.
func (g *gen) prefill(ctx context.Context, prompts [][]int64, pad int64, chunk int, ortTime *time.Duration) (logits []float32, lastT, runs int, err error) {
	T0 := 0
	for _, p := range prompts {
		T0 = max(T0, len(p))
	}
	for r, p := range prompts {
		g.pad[r] = T0 - len(p)
	}
	if chunk <= 0 {
		chunk = T0 // with logits_to_keep only the last column's logits exist
		if !g.m.Layout.HasLogitsToKeep {
			chunk = max(1, (64<<20)/(len(prompts)*g.V))
		}
	}
	for c0 := 0; c0 < T0; c0 += chunk {
		T := min(chunk, T0-c0)
		ids := g.ids(T)
		for r, p := range prompts {
			for t := 0; t < T; t++ {
				if j := c0 + t - g.pad[r]; j < 0 {
					ids[r*T+t] = pad
				} else {
					ids[r*T+t] = p[j]
				}
			}
		}
		if logits, lastT, err = g.forward(ctx, T, 1, ortTime); err != nil {
			return nil, 0, runs, err
		}
		runs++
	}
	return logits, lastT, runs, nil
}

// forward runs T new columns (already in the ids buffer) over the current
// past and returns the logits of the last K of them, [B,K,V], with K =
// min(keep, T) when the model takes logits_to_keep and T otherwise;
// ortTime accumulates the session run.
func (g *gen) forward(ctx context.Context, T, keep int, ortTime *time.Duration) ([]float32, int, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	m, ws, s := g.m, g.ws, &g.m.slot
	B, S := g.B, g.P+T
	if B*S > g.capPos {
		return nil, 0, fmt.Errorf("generate with %s: internal: %d rows × %d cache positions exceed the %d allocated", m.label, B, S, g.capPos)
	}
	ws.mask = grow(ws.mask, B*S)
	ws.pos = grow(ws.pos, B*T)
	for r := 0; r < B; r++ {
		p := g.pad[r]
		row := ws.mask[r*S : (r+1)*S]
		for j := range row {
			if j < p {
				row[j] = 0
			} else {
				row[j] = 1
			}
		}
		for t := 0; t < T; t++ {
			if j := g.P + t - p; j >= 0 {
				ws.pos[r*T+t] = int64(j)
			} else {
				ws.pos[r*T+t] = 1 // what Hugging Face feeds padded positions; they are masked anyway
			}
		}
	}
	K := T
	if s.keep >= 0 {
		K = min(max(keep, 1), T)
	}
	ws.logits = grow(ws.logits, B*K*g.V)

	var made []ort.Value
	defer func() {
		for _, v := range made {
			v.Destroy()
		}
	}()
	mk := func(shape []int64, data any) (ort.Value, error) {
		var v ort.Value
		var err error
		switch d := data.(type) {
		case []int64:
			v, err = ort.NewTensor(shape, d)
		case []float32:
			v, err = ort.NewTensor(shape, d)
		}
		if err != nil {
			return nil, fmt.Errorf("generate with %s: %w", m.label, err)
		}
		made = append(made, v)
		return v, nil
	}
	b, h, d := int64(B), int64(g.H), int64(g.D)
	var err error
	if g.in[s.ids], err = mk([]int64{b, int64(T)}, ws.ids[:B*T]); err != nil {
		return nil, 0, err
	}
	if g.in[s.mask], err = mk([]int64{b, int64(S)}, ws.mask); err != nil {
		return nil, 0, err
	}
	if s.pos >= 0 {
		if g.in[s.pos], err = mk([]int64{b, int64(T)}, ws.pos); err != nil {
			return nil, 0, err
		}
	}
	if s.branch >= 0 {
		v, err := ort.NewTensor([]int64{1}, []bool{g.P > 0})
		if err != nil {
			return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
		}
		made = append(made, v)
		g.in[s.branch] = v
	}
	if s.keep >= 0 {
		ws.keep = grow(ws.keep, 1)
		ws.keep[0] = int64(K)
		if g.in[s.keep], err = mk([]int64{1}, ws.keep); err != nil {
			return nil, 0, err
		}
	}
	if g.out[s.logits], err = mk([]int64{b, int64(K), int64(g.V)}, ws.logits); err != nil {
		return nil, 0, err
	}
	if err := g.bindHead(B, K, &made); err != nil {
		return nil, 0, err
	}
	if g.dc != nil {
		return g.dc.run(g, S, K, ortTime)
	}
	next := 1 - g.cur
	pres := make([]*ort.Tensor[float32], len(g.past))
	n := B * g.H * S * g.D
	for i := range pres {
		t, err := ort.NewTensor([]int64{b, h, int64(S), d}, ws.kv[next][i][:n])
		if err != nil {
			for _, p := range pres[:i] {
				p.Destroy()
			}
			return nil, 0, fmt.Errorf("generate with %s: %w", m.label, err)
		}
		pres[i] = t
	}
	for l := range s.pastK {
		g.in[s.pastK[l]], g.in[s.pastV[l]] = g.past[2*l], g.past[2*l+1]
		g.out[s.presK[l]], g.out[s.presV[l]] = pres[2*l], pres[2*l+1]
	}
	t0 := time.Now()
	err = m.sess.RunOrdered(g.in, g.out)
	*ortTime += time.Since(t0)
	if err != nil {
		for _, p := range pres {
			p.Destroy()
		}
		return nil, 0, err
	}
	for _, p := range g.past {
		p.Destroy()
	}
	g.past, g.cur, g.P = pres, next, S
	return ws.logits, K, nil
}

// expand repeats every row G times in place (row p becomes rows
// p·G … p·G+G-1), in the cache and the padding. Rows move only to higher
// positions, so walking from the last row down never overwrites a row
// before it is copied.
func (g *gen) expand(G int) error {
	if g.dc != nil {
		return g.dc.expand(g, G)
	}
	blk := g.H * g.P * g.D
	B := g.B * G
	for i, t := range g.past {
		buf := g.ws.kv[g.cur][i]
		for p := g.B - 1; p >= 0; p-- {
			for k := G - 1; k >= 0; k-- {
				if r := p*G + k; r != p {
					copy(buf[r*blk:(r+1)*blk], buf[p*blk:(p+1)*blk])
				}
			}
		}
		t.Destroy()
		g.past[i] = nil
	}
	g.expandPad(G)
	for i := range g.past {
		t, err := ort.NewTensor([]int64{int64(B), int64(g.H), int64(g.P), int64(g.D)}, g.ws.kv[g.cur][i][:B*blk])
		if err != nil {
			return fmt.Errorf("generate with %s: %w", g.m.label, err)
		}
		g.past[i] = t
	}
	return nil
}

// expandPad repeats every row's padding G times (see expand).
func (g *gen) expandPad(G int) {
	B := g.B * G
	g.pad = g.pad[:B]
	for p := g.B - 1; p >= 0; p-- {
		for k := G - 1; k >= 0; k-- {
			g.pad[p*G+k] = g.pad[p]
		}
	}
	g.B = B
}

// expandLast returns the last-column logits of Bp rows repeated G times
// each, as a [Bp·G, V] buffer.
func (m *Model) expandLast(logits []float32, Bp, T, G int) []float32 {
	V := m.Layout.Vocab
	m.ws.last = grow(m.ws.last, Bp*G*V)
	for p := Bp - 1; p >= 0; p-- {
		src := logits[(p*T+T-1)*V : (p*T+T)*V] // ws.logits: never overlaps ws.last
		for k := G - 1; k >= 0; k-- {
			copy(m.ws.last[(p*G+k)*V:(p*G+k+1)*V], src)
		}
	}
	return m.ws.last
}

// compact keeps only the batch rows in keep (ascending) in the cache: each
// kept row's block moves down in place within the current buffers, and the
// past tensors are re-made with the smaller batch. Later runs then skip the
// finished sequences entirely.
func (g *gen) compact(keep []int) error {
	if g.dc != nil {
		return g.dc.compact(g, keep)
	}
	blk := g.H * g.P * g.D
	for i, t := range g.past {
		buf := g.ws.kv[g.cur][i]
		for j, r := range keep {
			if r != j {
				copy(buf[j*blk:(j+1)*blk], buf[r*blk:(r+1)*blk])
			}
		}
		t.Destroy()
		g.past[i] = nil
	}
	g.compactPad(keep)
	for i := range g.past {
		t, err := ort.NewTensor([]int64{int64(g.B), int64(g.H), int64(g.P), int64(g.D)}, g.ws.kv[g.cur][i][:g.B*blk])
		if err != nil {
			return fmt.Errorf("generate with %s: %w", g.m.label, err)
		}
		g.past[i] = t
	}
	return nil
}

// compactPad keeps the padding of the rows in keep (see compact).
func (g *gen) compactPad(keep []int) {
	for j, r := range keep {
		g.pad[j] = g.pad[r]
	}
	g.B, g.pad = len(keep), g.pad[:len(keep)]
}

func (g *gen) release() {
	if g.dc != nil {
		g.dc.release()
		g.dc = nil
	}
	for _, p := range g.past {
		if p != nil {
			p.Destroy()
		}
	}
	g.past = nil
}
