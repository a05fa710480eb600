package lm

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// Batcher serves generation requests from one Model with continuous
// batching: one goroutine runs the decode batch a step at a time; a
// request submitted meanwhile is prefilled and joins the batch before the
// next step, a sequence that finishes leaves it at once, and the cache
// buffers are reused by whoever comes next. Every request streams its
// tokens as they are picked.
//
// The batch shares one cache length: rows are left-padded to the longest
// (see relayout). A joining prompt longer than the batch's past pads the
// others; when the longest row leaves, the common padding is dropped.
type Batcher struct {
	m      *Model
	o      BatcherOptions
	pad    int64
	eos    []int64
	capPos int // rows × positions the running cache may hold (from CacheBytes)

	mu     sync.Mutex
	queue  []*job
	closed bool
	wake   chan struct{}
	stop   context.CancelFunc
	done   chan struct{}

	// Engine state, touched only by the loop goroutine.
	run    *gen
	rows   []*seqRow
	ws     workspace // the running batch's cache
	pws    workspace // the joining prompts' prefill
	first  []float32 // first-token logits of joining rows
	invT   []float32
	picker picker
	cands  []candidate

	c batcherCounters
}

// BatcherOptions bound a Batcher's work and memory.
type BatcherOptions struct {
	// MaxRows is the most sequences decoded together (a request with n
	// completions takes n rows); default 32.
	MaxRows int
	// MaxQueue is the most requests waiting to join; Submit refuses more
	// with ErrQueueFull. Default 256.
	MaxQueue int
	// CacheBytes bounds the running batch's KV cache (both of its
	// ping-pong buffer sets); default 1 GiB. A request joins only when the
	// batch, with it, cannot outgrow this even if every row runs to its
	// max_new_tokens.
	CacheBytes int64
	// MaxPrefillTokens bounds the padded prompt tokens prefilled in one run
	// when several requests join at once (a first one always joins);
	// default 8192.
	MaxPrefillTokens int
	// Pad is the token fed for left padding (its value never reaches an
	// output); nil: the model's default.
	Pad *int64
	// EOS is used by requests that give none; nil: the model's default.
	EOS []int64
}

// ErrQueueFull and ErrBatcherClosed are Submit's refusals.
var (
	ErrQueueFull     = errors.New("generation queue is full")
	ErrBatcherClosed = errors.New("batcher is shut down")
)

// Request is one prompt to complete N times.
type Request struct {
	Prompt []int64
	// N is the number of completions (0 means 1); each takes a batch row.
	N            int
	MaxNewTokens int
	Sampling
	// Seed fixes sampling: completion s draws from the stream Generate
	// gives (prompt 0, sample s), so a request reproduces Generate's
	// completions of the same prompt alone.
	Seed uint64
	// EOS ends a completion (kept, with its log-prob); nil: the batcher's.
	EOS       []int64
	IgnoreEOS bool
	// StopStrings end a completion when its decoded tail contains one
	// (Detokenize is then required; it runs on the batcher's goroutine).
	StopStrings []string
	Detokenize  func(ids []int64) string
	// LogProbs reports each token's log-probability under the model (raw
	// logits: temperature 1, no top-k/top-p, no penalties), and TopLogProbs (0-20) the
	// most likely alternatives at each position.
	LogProbs    bool
	TopLogProbs int
}

// MaxTopLogProbs is the most alternatives a request may ask for.
const MaxTopLogProbs = 20

// TokenLogProb is one candidate token and its log-probability.
type TokenLogProb struct {
	ID      int64
	LogProb float32
}

// Token is one picked token of one completion of a request.
type Token struct {
	Sample  int // which of the request's N completions
	ID      int64
	LogProb float32        // with Request.LogProbs
	Top     []TokenLogProb // with Request.TopLogProbs, most likely first
	// Finish is set on a completion's last token.
	Finish FinishReason
	Stop   string // the stop string matched, with FinishStop
}

type job struct {
	ctx     context.Context
	req     Request
	eos     map[int64]bool
	stopWin int
	bound   int // prompt + max_new_tokens: the most positions a row can reach
	s       *Stream
	live    int // rows still generating
}

type seqRow struct {
	j    *job
	comp Completion
	rng  *rand.Rand
	seen *seenTokens // for the penalties (nil: none apply)
	// the pick of the last step
	tok int
	lp  float32
	top []TokenLogProb
}

// batcherCounters are read by Stats while the loop runs.
type batcherCounters struct {
	queued, rows, cachePos                   atomic.Int64
	requests, finished, failed               atomic.Int64
	promptTokens, generated, steps, rowSteps atomic.Int64
	prefills, prefillNanos, decodeNanos      atomic.Int64
}

// BatcherStats is a snapshot of a Batcher's gauges and counters.
type BatcherStats struct {
	Queued, Rows   int // requests waiting, sequences in the decode batch now
	CachePositions int // rows × positions the batch's cache holds now
	Requests       int64
	Finished       int64 // requests that ended normally
	Failed         int64 // requests canceled or failed
	PromptTokens   int64
	Generated      int64 // tokens picked
	DecodeSteps    int64
	RowSteps       int64 // rows summed over decode steps: RowSteps/DecodeSteps is the mean batch
	Prefills       int64 // prefill rounds (one per group of joining requests)
	PrefillTime    time.Duration
	DecodeTime     time.Duration
}

// NewBatcher starts a batcher over m; Close or Shutdown stops it. The model
// stays usable by others (Generate takes turns with the batcher's steps).
func NewBatcher(m *Model, o BatcherOptions) (*Batcher, error) {
	b, err := newBatcher(m, o)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.stop = cancel
	go b.loop(ctx)
	return b, nil
}

// newBatcher is NewBatcher without the loop (tests drive it a step at a time).
func newBatcher(m *Model, o BatcherOptions) (*Batcher, error) {
	if m.Layout.Float != "float32" {
		return nil, fmt.Errorf("batcher for %s: generation runs float32 models; this one is %s", m.label, m.Layout.Float)
	}
	if m.Layout.Vocab <= 0 {
		return nil, fmt.Errorf("batcher for %s: vocab size unknown (no config.json vocab_size and a symbolic logits dim)", m.label)
	}
	for _, name := range m.Layout.Extra {
		if !m.isBound(name) {
			return nil, fmt.Errorf("batcher for %s: input %q must be bound with Model.Bind first", m.label, name)
		}
	}
	if o.MaxRows <= 0 {
		o.MaxRows = 32
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = 256
	}
	if o.CacheBytes <= 0 {
		o.CacheBytes = 1 << 30
	}
	if o.MaxPrefillTokens <= 0 {
		o.MaxPrefillTokens = 8192
	}
	b := &Batcher{m: m, o: o, wake: make(chan struct{}, 1), done: make(chan struct{})}
	b.pad = m.DefaultPad()
	if o.Pad != nil {
		b.pad = *o.Pad
	}
	if b.pad < 0 || b.pad >= int64(m.Layout.Vocab) {
		return nil, fmt.Errorf("batcher for %s: pad token %d outside the vocab [0, %d)", m.label, b.pad, m.Layout.Vocab)
	}
	b.eos = o.EOS
	if b.eos == nil {
		b.eos = m.DefaultEOS()
	}
	// 2 buffer sets × 2 (key, value) × layers × kv heads × head dim floats
	// per cache position.
	perPos := int64(2*2*m.Layout.Layers*m.Layout.KVHeads*m.Layout.HeadDim) * 4
	b.capPos = int(min(o.CacheBytes/perPos, math.MaxInt32))
	run, err := b.newRun(&b.ws, 0)
	if err != nil {
		return nil, err
	}
	b.run = run
	return b, nil
}

// MaxPositions is the longest prompt + completion a request may ask for:
// the model's positions (config.json), else what the cache budget allows
// one row.
func (b *Batcher) MaxPositions() int {
	n := b.capPos
	if c := b.m.Config; c != nil {
		if p := max(c.MaxPositions, c.NPositions); p > 0 {
			n = min(n, p)
		}
	}
	return n
}

// CachePositions is the cache budget in positions: the most that the rows of
// one request (n × (prompt + max new tokens)) may take together.
func (b *Batcher) CachePositions() int { return b.capPos }

// Submit queues a request; its tokens arrive on the returned stream. When
// ctx ends, the request's rows leave the batch at the next step and the
// stream ends with ctx's error.
func (b *Batcher) Submit(ctx context.Context, r Request) (*Stream, error) {
	j, err := b.check(ctx, r)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrBatcherClosed
	}
	if len(b.queue) >= b.o.MaxQueue {
		return nil, ErrQueueFull
	}
	b.queue = append(b.queue, j)
	b.c.queued.Store(int64(len(b.queue)))
	b.c.requests.Add(1)
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return j.s, nil
}

func (b *Batcher) check(ctx context.Context, r Request) (*job, error) {
	fail := func(format string, a ...any) error {
		return fmt.Errorf("generate with %s: "+format, append([]any{b.m.label}, a...)...)
	}
	if r.N < 0 {
		return nil, fail("n is %d, want >= 1", r.N)
	}
	if r.N == 0 {
		r.N = 1
	}
	if r.N > b.o.MaxRows {
		return nil, fail("n is %d, more than the %d sequences decoded together", r.N, b.o.MaxRows)
	}
	if r.MaxNewTokens <= 0 {
		return nil, fail("max_new_tokens is %d, want > 0", r.MaxNewTokens)
	}
	if err := r.Sampling.validate(); err != nil {
		return nil, fail("%v", err)
	}
	if len(r.StopStrings) > 0 && r.Detokenize == nil {
		return nil, fail("stop strings %q need a Detokenize callback", r.StopStrings)
	}
	if r.TopLogProbs < 0 || r.TopLogProbs > MaxTopLogProbs {
		return nil, fail("top log-probs %d outside [0, %d]", r.TopLogProbs, MaxTopLogProbs)
	}
	if len(r.Prompt) == 0 {
		return nil, fail("the prompt is empty (a causal LM needs at least one token, e.g. BOS)")
	}
	V := int64(b.m.Layout.Vocab)
	for i, id := range r.Prompt {
		if id < 0 || id >= V {
			return nil, fail("prompt token %d: id %d outside the model's vocab [0, %d)", i, id, V)
		}
	}
	bound := len(r.Prompt) + r.MaxNewTokens
	if limit := b.MaxPositions(); bound > limit {
		return nil, fail("prompt %d + max_new_tokens %d exceeds the %d positions a sequence may take", len(r.Prompt), r.MaxNewTokens, limit)
	}
	if r.N*bound > b.capPos {
		return nil, fail("n %d × (prompt %d + max_new_tokens %d) cache positions exceed the cache budget of %d", r.N, len(r.Prompt), r.MaxNewTokens, b.capPos)
	}
	if r.EOS == nil {
		r.EOS = b.eos
	}
	j := &job{ctx: ctx, req: r, eos: map[int64]bool{}, bound: bound, live: r.N,
		s: &Stream{ready: make(chan struct{}, 1), PromptTokens: len(r.Prompt), Submitted: time.Now(), n: r.N, logProbs: r.LogProbs}}
	if !r.IgnoreEOS {
		for _, id := range r.EOS {
			j.eos[id] = true
		}
	}
	for _, s := range r.StopStrings {
		j.stopWin = max(j.stopWin, len(s)+8)
	}
	return j, nil
}

// Stats is a snapshot of the gauges and counters.
func (b *Batcher) Stats() BatcherStats {
	c := &b.c
	return BatcherStats{Queued: int(c.queued.Load()), Rows: int(c.rows.Load()), CachePositions: int(c.cachePos.Load()),
		Requests: c.requests.Load(), Finished: c.finished.Load(), Failed: c.failed.Load(),
		PromptTokens: c.promptTokens.Load(), Generated: c.generated.Load(), DecodeSteps: c.steps.Load(),
		RowSteps: c.rowSteps.Load(), Prefills: c.prefills.Load(),
		PrefillTime: time.Duration(c.prefillNanos.Load()), DecodeTime: time.Duration(c.decodeNanos.Load())}
}

// Shutdown stops taking requests and lets the queued and running ones
// finish; when ctx ends first, the rest are canceled (their streams end
// with ErrBatcherClosed). It returns once the loop has stopped.
func (b *Batcher) Shutdown(ctx context.Context) error {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	select {
	case <-b.done:
		return nil
	case <-ctx.Done():
		b.stop()
		<-b.done
		return ctx.Err()
	}
}

// Close cancels every request and stops the loop.
func (b *Batcher) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b.Shutdown(ctx)
	return nil
}

func (b *Batcher) loop(ctx context.Context) {
	defer close(b.done)
	defer b.run.release()
	for {
		if ctx.Err() != nil {
			b.failAll(ErrBatcherClosed)
			return
		}
		b.dropCanceled()
		joined := b.admit(ctx)
		if len(b.rows) > 0 {
			b.step(ctx)
			continue
		}
		if joined {
			continue
		}
		b.mu.Lock()
		idle, closed := len(b.queue) == 0, b.closed
		b.mu.Unlock()
		if !idle {
			continue
		}
		if closed {
			return
		}
		select {
		case <-b.wake:
		case <-ctx.Done():
		}
	}
}

// admit takes the queued requests that fit (in order: one that does not
// fit waits, and so do those behind it), prefills them together, picks
// their first tokens and merges their rows into the batch.
func (b *Batcher) admit(ctx context.Context) bool {
	b.mu.Lock()
	rows, bound := len(b.rows), 0
	for _, r := range b.rows {
		bound = max(bound, r.j.bound)
	}
	var take []*job
	longest := 0
	for len(b.queue) > 0 {
		j := b.queue[0]
		if err := j.ctx.Err(); err != nil {
			b.queue = b.queue[1:]
			b.c.failed.Add(1)
			j.s.finish(err)
			continue
		}
		nr, nb, nl := rows+j.req.N, max(bound, j.bound), max(longest, len(j.req.Prompt))
		if nr > b.o.MaxRows || nr*nb > b.capPos || (len(take) > 0 && (len(take)+1)*nl > b.o.MaxPrefillTokens) {
			break
		}
		take = append(take, j)
		b.queue = b.queue[1:]
		rows, bound, longest = nr, nb, nl
	}
	b.c.queued.Store(int64(len(b.queue)))
	b.mu.Unlock()
	if len(take) == 0 {
		return false
	}
	b.join(ctx, take)
	return true
}

// join prefills jobs, picks each row's first token, and merges the rows
// still generating into the batch.
func (b *Batcher) join(ctx context.Context, jobs []*job) {
	start := time.Now()
	prompts := make([][]int64, len(jobs))
	longest := 0
	for i, j := range jobs {
		prompts[i] = j.req.Prompt
		longest = max(longest, len(j.req.Prompt))
		j.s.setStarted(start)
		b.c.promptTokens.Add(int64(len(j.req.Prompt)))
	}
	fail := func(err error) {
		for _, j := range jobs {
			b.c.failed.Add(1)
			j.s.finish(err)
		}
	}
	pre, err := b.newPrefill(len(jobs), longest)
	if err != nil {
		fail(err)
		return
	}
	defer pre.release()
	V := b.m.Layout.Vocab
	var fresh []*seqRow
	var src []int // the prompt row in pre of each fresh row
	for i, j := range jobs {
		var ids []int32
		if j.req.penaltiesOn() {
			ids = promptIDs(j.req.Prompt)
		}
		for s := 0; s < j.req.N; s++ {
			r := &seqRow{j: j, comp: Completion{Sample: s, Tokens: make([]int64, 0, min(j.req.MaxNewTokens, 256))}}
			if !j.req.Greedy() {
				r.rng = rowRNG(j.req.Seed, 0, s)
			}
			if ids != nil {
				r.seen = &seenTokens{prompt: ids}
			}
			fresh = append(fresh, r)
			src = append(src, i)
		}
	}
	var d time.Duration
	b.m.mu.Lock()
	logits, lastT, _, err := pre.prefill(ctx, prompts, b.pad, 0, &d)
	if err == nil {
		b.first = grow(b.first, len(fresh)*V)
		for k, i := range src {
			copy(b.first[k*V:(k+1)*V], logits[(i*lastT+lastT-1)*V:(i*lastT+lastT)*V])
		}
		err = b.pick(pre, fresh, b.first)
	}
	b.m.mu.Unlock()
	b.c.prefills.Add(1)
	b.c.prefillNanos.Add(int64(time.Since(start)))
	if err != nil {
		fail(closedOr(ctx, fmt.Errorf("prefill: %w", err)))
		return
	}
	var srcs []rowSrc
	for r := range b.rows {
		srcs = append(srcs, rowSrc{g: b.run, row: r})
	}
	running := len(b.rows)
	for k, r := range fresh {
		if !b.accept(r) {
			b.rows = append(b.rows, r)
			srcs = append(srcs, rowSrc{g: pre, row: src[k]})
		}
	}
	if len(b.rows) > running {
		if err := b.relayout(srcs); err != nil {
			b.failRows(err)
		}
	}
}

// step runs one decode step over the batch: every row feeds its last
// token, picks the next, and finished or canceled rows leave.
func (b *Batcher) step(ctx context.Context) {
	start := time.Now()
	ids := b.run.ids(1)
	for r, row := range b.rows {
		ids[r] = row.comp.Tokens[len(row.comp.Tokens)-1]
	}
	var d time.Duration
	b.m.mu.Lock()
	if !b.m.separateHead {
		hq := b.headReq(b.rows)
		b.run.head = &hq
	}
	logits, _, err := b.run.forward(ctx, 1, 1, &d)
	if err == nil {
		err = b.pick(b.run, b.rows, logits)
	}
	b.m.mu.Unlock()
	b.c.steps.Add(1)
	b.c.rowSteps.Add(int64(len(b.rows)))
	if err != nil {
		b.failRows(closedOr(ctx, err))
		return
	}
	b.dropRows(b.accept)
	b.c.decodeNanos.Add(int64(time.Since(start)))
}

// closedOr is err, or ErrBatcherClosed when the loop's context has ended:
// a Close that lands while a run is under way cancels that run, and its
// requests end as Shutdown says, not with the loop's context error.
func closedOr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ErrBatcherClosed
	}
	return err
}

// dropRows removes the rows leave reports true for, and re-lays the cache
// out without them.
func (b *Batcher) dropRows(leave func(*seqRow) bool) {
	var keep []*seqRow
	var srcs []rowSrc
	for r, row := range b.rows {
		if !leave(row) {
			keep = append(keep, row)
			srcs = append(srcs, rowSrc{g: b.run, row: r})
		}
	}
	if len(keep) < len(b.rows) {
		b.rows = keep
		if err := b.relayout(srcs); err != nil {
			b.failRows(err)
		}
	}
}

// headReq is the decode head rows need: all-greedy batches the same as
// Generate's, mixed ones a temperature per row.
func (b *Batcher) headReq(rows []*seqRow) graphHeadReq {
	greedy, wantLP := true, false
	for _, r := range rows {
		greedy = greedy && r.j.req.Greedy()
		wantLP = wantLP || r.j.req.LogProbs || r.j.req.TopLogProbs > 0
	}
	if greedy {
		return graphHeadReq{kind: headKind{logProbs: wantLP}, inv: 1}
	}
	b.invT = grow(b.invT, len(rows))
	for i, r := range rows {
		b.invT[i] = 1
		if !r.j.req.Greedy() {
			b.invT[i] = float32(1 / r.j.req.Temperature)
		}
	}
	return graphHeadReq{kind: headKind{sample: true, tempered: true, perRow: true, logProbs: wantLP}, rowInv: b.invT}
}

// pick chooses each row's next token from logits [len(rows), V], the last
// run of g (under m.mu: the decode heads are the model's): from that run's
// in-graph head when it computed one, else from the separate head.
func (b *Batcher) pick(g *gen, rows []*seqRow, logits []float32) error {
	B, V := len(rows), b.m.Layout.Vocab
	var head time.Duration
	h, err := b.m.lastHead(g, b.headReq(rows), logits, B, &head)
	if err != nil {
		return err
	}
	for i, r := range rows {
		if !h.finite(i, V) {
			return errNonFinite(b.m.label, i, len(r.comp.Tokens))
		}
		q := &r.j.req
		inv := 1.0
		if !q.Greedy() {
			inv = float64(b.invT[i])
		}
		r.tok = b.picker.pickToken(h, i, logits[i*V:(i+1)*V], q.Sampling, inv, r.rng, r.seen)
		r.lp, r.top = 0, nil
		if q.LogProbs || q.TopLogProbs > 0 {
			row := h.logp[i*V : (i+1)*V]
			r.lp = row[r.tok]
			if q.TopLogProbs > 0 {
				b.cands = topK(b.cands[:0], row, q.TopLogProbs)
				r.top = make([]TokenLogProb, len(b.cands))
				for k, c := range b.cands {
					r.top[k] = TokenLogProb{ID: int64(c.id), LogProb: float32(c.w)}
				}
			}
		}
	}
	return nil
}

// accept appends a row's picked token to its completion, streams it, and
// reports whether the row is done (finished, or its request canceled).
func (b *Batcher) accept(r *seqRow) bool {
	j := r.j
	if err := j.ctx.Err(); err != nil {
		b.cancel(j, err)
		return true
	}
	c := &r.comp
	c.Tokens = append(c.Tokens, int64(r.tok))
	if r.seen != nil {
		r.seen.add(r.tok)
	}
	if j.req.LogProbs {
		c.LogProbs = append(c.LogProbs, r.lp)
	}
	b.c.generated.Add(1)
	switch {
	case j.eos[int64(r.tok)]:
		c.Finish = FinishEOS
	case j.stopWin > 0 && matchStop(c, j.req.StopStrings, j.req.Detokenize, j.stopWin):
		c.Finish = FinishStop
	case len(c.Tokens) >= j.req.MaxNewTokens:
		c.Finish = FinishLength
	}
	t := Token{Sample: c.Sample, ID: int64(r.tok), Top: r.top, Finish: c.Finish, Stop: c.Stop}
	if j.req.LogProbs {
		t.LogProb = r.lp
	}
	j.s.push(t)
	if c.Finish == "" {
		return false
	}
	if j.live--; j.live == 0 {
		b.c.finished.Add(1)
		j.s.finish(nil)
	}
	return true
}

// dropCanceled removes the rows of requests whose context ended.
func (b *Batcher) dropCanceled() {
	b.dropRows(func(row *seqRow) bool {
		if err := row.j.ctx.Err(); err != nil {
			b.cancel(row.j, err)
			return true
		}
		return false
	})
}

// cancel ends a request whose context ended (once; its other rows are
// dropped as they come).
func (b *Batcher) cancel(j *job, err error) {
	if !j.s.done() {
		b.c.failed.Add(1)
		j.s.finish(err)
	}
}

// failRows ends every running request with err and empties the batch.
func (b *Batcher) failRows(err error) {
	for _, r := range b.rows {
		b.cancel(r.j, err)
	}
	b.rows = nil
	b.run.B, b.run.P, b.run.pad = 0, 0, b.run.pad[:0]
	b.emptyCache()
	b.c.rows.Store(0)
	b.c.cachePos.Store(0)
}

// failAll ends the running and queued requests with err.
func (b *Batcher) failAll(err error) {
	b.failRows(err)
	b.mu.Lock()
	q := b.queue
	b.queue, b.closed = nil, true
	b.c.queued.Store(0)
	b.mu.Unlock()
	for _, j := range q {
		b.c.failed.Add(1)
		j.s.finish(err)
	}
}

// Stream delivers one request's tokens in the order they were picked.
type Stream struct {
	mu     sync.Mutex
	toks   []Token
	err    error
	closed bool
	ready  chan struct{}
	// PromptTokens is the prompt's length; Submitted when it was queued.
	PromptTokens int
	Submitted    time.Time
	started      time.Time
	n            int  // completions
	logProbs     bool // the request asked for log-probs
}

func (s *Stream) push(t Token) {
	s.mu.Lock()
	s.toks = append(s.toks, t)
	s.mu.Unlock()
	s.signal()
}

func (s *Stream) signal() {
	select {
	case s.ready <- struct{}{}:
	default:
	}
}

func (s *Stream) finish(err error) {
	s.mu.Lock()
	if !s.closed {
		s.closed, s.err = true, err
	}
	s.mu.Unlock()
	s.signal()
}

func (s *Stream) done() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Stream) setStarted(t time.Time) {
	s.mu.Lock()
	s.started = t
	s.mu.Unlock()
}

// Started is when the request left the queue (zero while it waits).
func (s *Stream) Started() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started
}

// Recv returns the tokens picked since the last call, waiting for at least
// one. After the last token it returns io.EOF-like ErrStreamDone; a
// canceled or failed request returns its error (after its tokens). It
// returns ctx's error when ctx ends first.
func (s *Stream) Recv(ctx context.Context) ([]Token, error) {
	for {
		s.mu.Lock()
		toks, err, closed := s.toks, s.err, s.closed
		s.toks = nil
		s.mu.Unlock()
		if len(toks) > 0 {
			return toks, nil
		}
		if closed {
			if err != nil {
				return nil, err
			}
			return nil, ErrStreamDone
		}
		select {
		case <-s.ready:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// ErrStreamDone is Recv's answer after a request's last token.
var ErrStreamDone = errors.New("stream done")

// Collect waits for every token and returns the request's completions in
// sample order (Prompt is 0); LogProbs are filled with Request.LogProbs.
func (s *Stream) Collect(ctx context.Context) ([]Completion, error) {
	out := make([]Completion, s.n)
	for i := range out {
		out[i].Sample = i
	}
	for {
		toks, err := s.Recv(ctx)
		if errors.Is(err, ErrStreamDone) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		for _, t := range toks {
			c := &out[t.Sample]
			c.Tokens = append(c.Tokens, t.ID)
			if s.logProbs {
				c.LogProbs = append(c.LogProbs, t.LogProb)
			}
			c.Finish, c.Stop = t.Finish, t.Stop
		}
	}
}
