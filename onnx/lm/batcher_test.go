package lm

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// batcherPrompts are prompts of different lengths, so that joining rows
// are padded to the running ones and the other way round.
var batcherPrompts = [][]int64{
	{1, 5, 9, 14, 3}, {1, 40, 41, 42, 43, 44, 45, 46, 47}, {1, 7, 8}, {1, 11},
	{1, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31}, {1, 60, 61, 62}, {1, 3, 3, 3, 3, 3}, {1, 90},
}

func alone(t *testing.T, m *Model, p []int64, o GenerateOptions) []Completion {
	t.Helper()
	c, _, err := m.Generate(context.Background(), [][]int64{p}, o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Requests submitted while others decode join the running batch, and each
// gets what Generate gives its prompt alone: greedy tokens and log-probs,
// and sampled tokens for the same seed.
func TestBatcherJoinsRunningBatch(t *testing.T) {
	for name, c := range testConfigs() {
		t.Run(name, func(t *testing.T) {
			m := buildModel(t, c)
			b, err := NewBatcher(m, BatcherOptions{MaxRows: 16})
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			ctx := context.Background()
			reqs := make([]Request, len(batcherPrompts))
			for i, p := range batcherPrompts {
				reqs[i] = Request{Prompt: p, MaxNewTokens: 6 + 3*i, IgnoreEOS: i%2 == 0, LogProbs: true}
				if i == 0 {
					reqs[i].MaxNewTokens = 40
				}
				if i%3 == 1 {
					reqs[i].Sampling, reqs[i].Seed, reqs[i].N = Sampling{Temperature: 0.8, TopP: 0.9}, uint64(i), 2
				}
				if i%4 == 3 { // penalties, greedy or sampled
					reqs[i].RepetitionPenalty, reqs[i].FrequencyPenalty, reqs[i].PresencePenalty = 1.3, 0.4, 0.2
				}
			}
			// The first request is admitted alone and waits for the model;
			// the others queue meanwhile and join its running batch at the
			// step after its prefill.
			m.mu.Lock()
			first := holdAdmitted(t, b, reqs[0])
			streams := []*Stream{first}
			for _, r := range reqs[1:] {
				s, err := b.Submit(ctx, r)
				if err != nil {
					m.mu.Unlock()
					t.Fatal(err)
				}
				streams = append(streams, s)
			}
			m.mu.Unlock()
			for i, s := range streams {
				got, err := s.Collect(ctx)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				r := reqs[i]
				want := alone(t, m, r.Prompt, GenerateOptions{MaxNewTokens: r.MaxNewTokens, NumGenerations: r.N,
					Sampling: r.Sampling, Seed: r.Seed, IgnoreEOS: r.IgnoreEOS})
				for k := range want {
					if !equalIDs(got[k].Tokens, want[k].Tokens) || got[k].Finish != want[k].Finish {
						t.Errorf("request %d sample %d: batched %v (%s), alone %v (%s)", i, k, got[k].Tokens, got[k].Finish, want[k].Tokens, want[k].Finish)
						continue
					}
					if d := maxDiff(got[k].LogProbs, want[k].LogProbs); d > 1e-4 {
						t.Errorf("request %d sample %d: log-probs differ from Generate's by %.2e", i, k, d)
					}
				}
			}
			st := b.Stats()
			if st.DecodeSteps == 0 || float64(st.RowSteps)/float64(st.DecodeSteps) < 2 {
				t.Errorf("mean batch %d/%d: the requests did not share decode steps", st.RowSteps, st.DecodeSteps)
			}
			if st.Finished != int64(len(reqs)) || st.Rows != 0 || st.Queued != 0 || st.CachePositions != 0 {
				t.Errorf("stats after all finished: %+v", st)
			}
		})
	}
}

// Many concurrent clients with more rows than the batch holds: each waits
// its turn, and every answer equals its prompt's greedy answer alone.
func TestBatcherConcurrentClients(t *testing.T) {
	m := buildModel(t, testConfigs()["llama"])
	b, err := NewBatcher(m, BatcherOptions{MaxRows: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	const clients = 16
	got := make([][]Completion, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := b.Submit(ctx, Request{Prompt: batcherPrompts[i%len(batcherPrompts)], MaxNewTokens: 4 + i, N: 1 + i%2})
			if err != nil {
				errs[i] = err
				return
			}
			got[i], errs[i] = s.Collect(ctx)
		}()
	}
	wg.Wait()
	for i := 0; i < clients; i++ {
		if errs[i] != nil {
			t.Fatalf("client %d: %v", i, errs[i])
		}
		want := alone(t, m, batcherPrompts[i%len(batcherPrompts)], GenerateOptions{MaxNewTokens: 4 + i, NoLogProbs: true})
		for k, c := range got[i] {
			if !equalIDs(c.Tokens, want[0].Tokens) {
				t.Errorf("client %d sample %d: %v, alone %v", i, k, c.Tokens, want[0].Tokens)
			}
		}
	}
}

// Stop strings, EOS and top log-probs per request; a canceled request
// leaves the batch without disturbing the others.
func TestBatcherStopsAndCancels(t *testing.T) {
	m := buildModel(t, testConfigs()["gpt2"])
	b, err := NewBatcher(m, BatcherOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	p := batcherPrompts[1]
	ref := alone(t, m, p, GenerateOptions{MaxNewTokens: 10, IgnoreEOS: true})[0]
	stop := textOf(ref.Tokens[3:5])
	detok := func(ids []int64) string { return textOf(ids) }

	cctx, cancel := context.WithCancel(ctx)
	long, err := b.Submit(cctx, Request{Prompt: batcherPrompts[0], MaxNewTokens: 50, IgnoreEOS: true})
	if err != nil {
		t.Fatal(err)
	}
	stopped, err := b.Submit(ctx, Request{Prompt: p, MaxNewTokens: 10, StopStrings: []string{stop}, Detokenize: detok})
	if err != nil {
		t.Fatal(err)
	}
	eos, err := b.Submit(ctx, Request{Prompt: p, MaxNewTokens: 10, EOS: []int64{ref.Tokens[2]}, LogProbs: true, TopLogProbs: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := long.Recv(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := long.Collect(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("canceled request ended with %v, want context.Canceled", err)
	}
	sc, err := stopped.Collect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sc[0].Finish != FinishStop || sc[0].Stop != stop || !equalIDs(sc[0].Tokens, ref.Tokens[:5]) {
		t.Errorf("stop string %q: %v (%s %q), want %v", stop, sc[0].Tokens, sc[0].Finish, sc[0].Stop, ref.Tokens[:5])
	}
	var toks []Token
	for {
		tk, err := eos.Recv(ctx)
		if errors.Is(err, ErrStreamDone) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tk...)
	}
	if len(toks) != 3 || toks[2].Finish != FinishEOS || toks[0].Finish != "" {
		t.Fatalf("EOS at the 3rd token: %+v", toks)
	}
	for i, tk := range toks {
		if len(tk.Top) != 3 || tk.Top[0].ID != tk.ID || tk.Top[0].LogProb != tk.LogProb ||
			tk.Top[1].LogProb > tk.Top[0].LogProb || tk.Top[2].LogProb > tk.Top[1].LogProb {
			t.Errorf("token %d: greedy pick %d (%.4f) is not the first of its top log-probs %+v", i, tk.ID, tk.LogProb, tk.Top)
		}
		if math.Abs(float64(tk.LogProb-ref.LogProbs[i])) > 1e-4 {
			t.Errorf("token %d log-prob %.5f, Generate's %.5f", i, tk.LogProb, ref.LogProbs[i])
		}
	}
	if st := b.Stats(); st.Failed != 1 || st.Finished != 2 {
		t.Errorf("stats: %d failed, %d finished; want 1 and 2", st.Failed, st.Finished)
	}
}

// Refusals name what is wrong; a full queue and a shut-down batcher refuse
// with their errors; Shutdown lets running requests finish.
func TestBatcherRefusalsAndShutdown(t *testing.T) {
	m := buildModel(t, testConfigs()["llama"])
	b, err := NewBatcher(m, BatcherOptions{MaxRows: 2, MaxQueue: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ctx := context.Background()
	for _, c := range []struct {
		r    Request
		want string
	}{
		{Request{MaxNewTokens: 3}, "prompt is empty"},
		{Request{Prompt: []int64{1, 500}, MaxNewTokens: 3}, "id 500 outside"},
		{Request{Prompt: []int64{1}, MaxNewTokens: 64}, "exceeds the 64 positions"},
		{Request{Prompt: []int64{1}, MaxNewTokens: 3, N: 3}, "n is 3"},
		{Request{Prompt: []int64{1}, MaxNewTokens: 3, Sampling: Sampling{Temperature: math.NaN()}}, "temperature"},
		{Request{Prompt: []int64{1}, MaxNewTokens: 3, StopStrings: []string{"x"}}, "Detokenize"},
		{Request{Prompt: []int64{1}, MaxNewTokens: 3, TopLogProbs: 21}, "top log-probs 21"},
	} {
		if _, err := b.Submit(ctx, c.r); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one naming %q", c.r, err, c.want)
		}
	}
	// Hold the model while a first request is being admitted: one more
	// request queues, the next is refused.
	m.mu.Lock()
	running := holdAdmitted(t, b, Request{Prompt: []int64{1, 2}, MaxNewTokens: 20, IgnoreEOS: true})
	queued, err := b.Submit(ctx, Request{Prompt: []int64{1, 3}, MaxNewTokens: 5, IgnoreEOS: true})
	if err != nil {
		m.mu.Unlock()
		t.Fatal(err)
	}
	_, err = b.Submit(ctx, Request{Prompt: []int64{1, 4}, MaxNewTokens: 5})
	m.mu.Unlock()
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("second queued request: %v, want ErrQueueFull", err)
	}
	sctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := b.Shutdown(sctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	for i, s := range []*Stream{running, queued} {
		c, err := s.Collect(ctx)
		if err != nil || c[0].Finish != FinishLength {
			t.Errorf("stream %d after a graceful shutdown: %v %+v", i, err, c)
		}
	}
	if _, err := b.Submit(ctx, Request{Prompt: []int64{1}, MaxNewTokens: 2}); !errors.Is(err, ErrBatcherClosed) {
		t.Errorf("submit after shutdown: %v", err)
	}
}

// holdAdmitted submits r while the test holds m.mu and returns once the
// batcher has taken it from the queue (it then waits for the model in its
// prefill, so whatever is submitted next queues behind it).
func holdAdmitted(t *testing.T, b *Batcher, r Request) *Stream {
	t.Helper()
	s, err := b.Submit(context.Background(), r)
	if err != nil {
		b.m.mu.Unlock()
		t.Fatal(err)
	}
	for s.Started().IsZero() {
		time.Sleep(time.Millisecond)
	}
	return s
}

// A batcher closed while a request is being prefilled (or decoded) ends
// that request with ErrBatcherClosed, as Shutdown says, not with the
// loop's own context error: the close cancels the run under way.
func TestBatcherCloseDuringRunEndsWithErrBatcherClosed(t *testing.T) {
	m := buildModel(t, testConfigs()["llama"])
	b, err := NewBatcher(m, BatcherOptions{MaxRows: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	m.mu.Lock()
	running := holdAdmitted(t, b, Request{Prompt: []int64{1, 2}, MaxNewTokens: 20, IgnoreEOS: true})
	b.stop() // what Close does first; the loop is waiting for the model in its prefill
	m.mu.Unlock()
	if _, err := running.Collect(context.Background()); !errors.Is(err, ErrBatcherClosed) {
		t.Errorf("request running when the batcher closed ended with %v, want ErrBatcherClosed", err)
	}
}
