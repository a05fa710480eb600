package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tagpr/tagpr/onnx/lm"
)

// choice is one completion being answered: its text so far, its reasoning
// split and log-probs, and how it ended.
type choice struct {
	index              int
	text               textState
	split              *thinkSplit
	content, reasoning strings.Builder
	tokens             int
	finish             lm.FinishReason
	stop               string
	chatLP             []chatLogProb
	compLP             completionLogProbs
}

// piece is what one token added to a choice, for a stream chunk.
type piece struct {
	content, reasoning string
	chatLP             *chatLogProb
	compLP             *completionLogProbs
	finished           bool
}

func (c *choice) add(m *Model, t lm.Token, p *plan) piece {
	c.tokens++
	final := t.Finish != ""
	text := c.text.add(t.ID, t.Finish)
	var u piece
	if c.split != nil {
		u.reasoning, u.content = c.split.feed(text, final)
	} else {
		u.content = text
	}
	offset := c.content.Len()
	c.content.WriteString(u.content)
	c.reasoning.WriteString(u.reasoning)
	if p.logProbs {
		tok, raw := tokenText(m, t.ID)
		if p.chat {
			e := chatLogProb{topLogProb: topLogProb{Token: tok, LogProb: t.LogProb, Bytes: raw}, TopLogProbs: []topLogProb{}}
			for _, a := range t.Top {
				at, ab := tokenText(m, a.ID)
				e.TopLogProbs = append(e.TopLogProbs, topLogProb{Token: at, LogProb: a.LogProb, Bytes: ab})
			}
			c.chatLP = append(c.chatLP, e)
			u.chatLP = &e
		} else {
			top := map[string]float32{}
			for _, a := range t.Top {
				at, _ := tokenText(m, a.ID)
				if _, dup := top[at]; !dup {
					top[at] = a.LogProb
				}
			}
			lp := &c.compLP
			lp.Tokens = append(lp.Tokens, tok)
			lp.TokenLogProbs = append(lp.TokenLogProbs, t.LogProb)
			lp.TopLogProbs = append(lp.TopLogProbs, top)
			lp.TextOffset = append(lp.TextOffset, offset)
			u.compLP = &completionLogProbs{Tokens: []string{tok}, TokenLogProbs: []float32{t.LogProb},
				TopLogProbs: []map[string]float32{top}, TextOffset: []int{offset}}
		}
	}
	if final {
		c.finish, c.stop, u.finished = t.Finish, t.Stop, true
	}
	return u
}

func (c *choice) finishReason() *string {
	r := "stop"
	if c.finish == lm.FinishLength {
		r = "length"
	}
	return &r
}

// stopReason is the stop string that ended the choice (vLLM reports it).
func (c *choice) stopReason() any {
	if c.finish == lm.FinishStop {
		return c.stop
	}
	return nil
}

// tokenText is a token's text for log-prob reports, with its raw bytes (a
// byte-level token may hold part of a character).
func tokenText(m *Model, id int64) (string, []int) {
	b, _ := m.Tok.TokenBytes(id)
	ints := make([]int, len(b))
	for i, x := range b {
		ints[i] = int(x)
	}
	if utf8.Valid(b) {
		return string(b), ints
	}
	return strings.ToValidUTF8(string(b), string(utf8.RuneError)), ints
}

type streamEvent struct {
	prompt int
	toks   []lm.Token
	err    error
}

// fanIn merges the streams of a request's prompts; each ends with one
// event carrying an error (lm.ErrStreamDone when it finished).
func fanIn(ctx context.Context, streams []*lm.Stream) <-chan streamEvent {
	ch := make(chan streamEvent, len(streams))
	for i, st := range streams {
		go func() {
			for {
				toks, err := st.Recv(ctx)
				ch <- streamEvent{prompt: i, toks: toks, err: err}
				if err != nil {
					return
				}
			}
		}()
	}
	return ch
}

// generate submits a plan's prompts to the batcher and answers with one
// JSON body or, with stream, server-sent events: a chunk per token.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, p *plan) {
	start := time.Now()
	s.met.addInFlight(1)
	defer s.met.addInFlight(-1)
	// timed ends with the request's time (or the client, or a shutdown that
	// gives up waiting); ctx also when the generation fails.
	timed, timedOut := context.WithTimeout(r.Context(), s.o.RequestTimeout)
	defer timedOut()
	defer context.AfterFunc(s.abort, timedOut)()
	ctx, cancel := context.WithCancel(timed)
	defer cancel()
	defer s.boundWrites(w, timed)()

	streams := make([]*lm.Stream, len(p.reqs))
	for i, q := range p.reqs {
		st, err := s.b.Submit(ctx, q)
		if err != nil {
			cancel() // ends the prompts already queued
			s.fail(w, submitError(err))
			return
		}
		streams[i] = st
	}
	choices := make([]*choice, len(p.reqs)*p.n)
	for i := range choices {
		c := &choice{index: i}
		c.text.init(s.m, p.stops)
		if p.chat && p.split {
			c.split = newThinkSplit(p.opensThink[i/p.n])
		}
		choices[i] = c
	}
	out := &answer{s: s, p: p, id: s.newID("cmpl-"), created: time.Now().Unix()}
	if p.chat {
		out.id = s.newID("chatcmpl-")
	}
	if p.stream {
		out.startStream(w, choices)
	}
	var failure error
	seen := make([]bool, len(streams))
	firstToken := true
	events := fanIn(ctx, streams)
	for pending := len(streams); pending > 0; {
		ev := <-events
		if ev.err != nil {
			pending--
			if !errors.Is(ev.err, lm.ErrStreamDone) && failure == nil {
				failure = ev.err
				cancel()
			}
			continue
		}
		if !seen[ev.prompt] {
			seen[ev.prompt] = true
			st := streams[ev.prompt]
			s.met.observe(&s.met.queue, st.Started().Sub(st.Submitted))
		}
		if firstToken {
			firstToken = false
			s.met.observe(&s.met.ttft, time.Since(start))
		}
		for _, t := range ev.toks {
			c := choices[ev.prompt*p.n+t.Sample]
			u := c.add(s.m, t, p)
			if p.stream {
				out.chunk(c, u)
			}
		}
	}
	var e *apiError
	if failure != nil {
		e = s.generationError(r, failure)
	}
	defer func() {
		took := time.Since(start)
		s.met.observe(&s.met.e2e, took)
		u := out.usage(choices)
		attrs := []any{"path", r.URL.Path, "stream", p.stream, "n", p.n, "prompt_tokens", u.PromptTokens,
			"completion_tokens", u.CompletionTokens, "ms", took.Milliseconds()}
		if e != nil {
			s.o.Logger.Warn("request failed", append(attrs, "status", e.Status, "error", e.Message)...)
			return
		}
		s.o.Logger.Info("request", attrs...)
	}()
	if p.stream {
		out.endStream(choices, e)
		return
	}
	if e != nil {
		if r.Context().Err() != nil {
			w.WriteHeader(499) // the client is gone: nobody reads this
			return
		}
		s.fail(w, e)
		return
	}
	out.whole(w, choices)
}

// boundWrites keeps a client that stops reading from holding its slot
// past the request's time: a write blocked on its full connection would
// wait for it for good (the server has no write timeout, as a stream may
// run for minutes). When timed ends, the writes still to come get a grace
// (for the error event a reading client is owed), then fail. The returned
// func, called as the handler returns, lifts the deadline again for the
// connection's next request.
func (s *Server) boundWrites(w http.ResponseWriter, timed context.Context) (lift func()) {
	rc := http.NewResponseController(w)
	set := make(chan struct{})
	stop := context.AfterFunc(timed, func() {
		rc.SetWriteDeadline(time.Now().Add(min(writeGrace, s.o.RequestTimeout)))
		close(set)
	})
	return func() {
		if !stop() {
			<-set
			rc.SetWriteDeadline(time.Time{})
		}
	}
}

// writeGrace is how long a request's last writes may take once its time is
// up (at most RequestTimeout).
const writeGrace = 5 * time.Second

func submitError(err error) *apiError {
	switch {
	case errors.Is(err, lm.ErrQueueFull):
		return newError(429, "rate_limit_error", "queue_full", "", "the generation queue is full; retry later")
	case errors.Is(err, lm.ErrBatcherClosed):
		return newError(503, "server_error", "shutting_down", "", "the server is shutting down")
	default:
		return badRequest("", "%v", err)
	}
}

// generationError maps why a request's generation ended early.
func (s *Server) generationError(r *http.Request, err error) *apiError {
	switch {
	case s.abort.Err() != nil || errors.Is(err, lm.ErrBatcherClosed):
		return newError(503, "server_error", "shutting_down", "", "the server shut down before the answer was complete")
	case errors.Is(err, context.DeadlineExceeded):
		return newError(504, "server_error", "timeout", "", "the request took longer than %s (--request-timeout)", s.o.RequestTimeout)
	case r.Context().Err() != nil:
		return newError(499, "invalid_request_error", "client_closed", "", "the client closed the connection")
	default:
		return newError(500, "server_error", "", "", "generation failed: %v", err)
	}
}

// answer writes a request's response: whole, or as server-sent events.
type answer struct {
	s       *Server
	p       *plan
	id      string
	created int64
	w       http.ResponseWriter
	flush   http.Flusher
	broken  bool // the client stopped reading
}

func (a *answer) usage(choices []*choice) *usage {
	u := &usage{}
	for _, pr := range a.p.prompts {
		u.PromptTokens += len(pr)
	}
	for _, c := range choices {
		u.CompletionTokens += c.tokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

func (a *answer) whole(w http.ResponseWriter, choices []*choice) {
	name := a.s.m.Name
	if a.p.chat {
		res := chatResponse{ID: a.id, Object: "chat.completion", Created: a.created, Model: name, Usage: a.usage(choices)}
		for _, c := range choices {
			ch := chatChoice{Index: c.index, Message: &chatMessageOut{Role: "assistant", Content: c.content.String(), ReasoningContent: c.reasoning.String()},
				FinishReason: c.finishReason(), StopReason: c.stopReason()}
			if a.p.logProbs {
				ch.LogProbs = &chatLogProbs{Content: c.chatLP}
			}
			res.Choices = append(res.Choices, ch)
		}
		writeJSON(w, 200, res)
		return
	}
	res := completionResponse{ID: a.id, Object: "text_completion", Created: a.created, Model: name, Usage: a.usage(choices)}
	for _, c := range choices {
		ch := completionChoice{Index: c.index, Text: c.content.String(), FinishReason: c.finishReason(), StopReason: c.stopReason()}
		if a.p.logProbs {
			ch.LogProbs = &c.compLP
		}
		res.Choices = append(res.Choices, ch)
	}
	writeJSON(w, 200, res)
}

func (a *answer) startStream(w http.ResponseWriter, choices []*choice) {
	a.w = w
	a.flush, _ = w.(http.Flusher)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(200)
	if a.p.chat {
		empty := ""
		for _, c := range choices {
			a.send(a.chatChunk(chatChoice{Index: c.index, Delta: &chatDelta{Role: "assistant", Content: &empty}}))
		}
	}
	if a.flush != nil {
		a.flush.Flush()
	}
}

func (a *answer) chatChunk(c chatChoice) chatResponse {
	return chatResponse{ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.s.m.Name, Choices: []chatChoice{c}}
}

func (a *answer) completionChunk(c completionChoice) completionResponse {
	return completionResponse{ID: a.id, Object: "text_completion", Created: a.created, Model: a.s.m.Name, Choices: []completionChoice{c}}
}

// chunk sends what one token added (nothing when it added no text and no
// log-prob was asked for), then the finish chunk on a choice's last token.
func (a *answer) chunk(c *choice, u piece) {
	if u.content != "" || u.reasoning != "" || u.chatLP != nil || u.compLP != nil {
		if a.p.chat {
			d := &chatDelta{}
			if u.content != "" {
				d.Content = &u.content
			}
			if u.reasoning != "" {
				d.ReasoningContent = &u.reasoning
			}
			ch := chatChoice{Index: c.index, Delta: d}
			if u.chatLP != nil {
				ch.LogProbs = &chatLogProbs{Content: []chatLogProb{*u.chatLP}}
			}
			a.send(a.chatChunk(ch))
		} else {
			a.send(a.completionChunk(completionChoice{Index: c.index, Text: u.content, LogProbs: u.compLP}))
		}
	}
	if u.finished {
		if a.p.chat {
			a.send(a.chatChunk(chatChoice{Index: c.index, Delta: &chatDelta{}, FinishReason: c.finishReason(), StopReason: c.stopReason()}))
		} else {
			a.send(a.completionChunk(completionChoice{Index: c.index, FinishReason: c.finishReason(), StopReason: c.stopReason()}))
		}
	}
}

// endStream sends the error (if the generation failed), the usage chunk
// when asked for, and [DONE].
func (a *answer) endStream(choices []*choice, e *apiError) {
	if e != nil {
		a.send(map[string]*apiError{"error": e})
	}
	if a.p.includeUsage {
		if a.p.chat {
			a.send(chatResponse{ID: a.id, Object: "chat.completion.chunk", Created: a.created, Model: a.s.m.Name, Choices: []chatChoice{}, Usage: a.usage(choices)})
		} else {
			a.send(completionResponse{ID: a.id, Object: "text_completion", Created: a.created, Model: a.s.m.Name, Choices: []completionChoice{}, Usage: a.usage(choices)})
		}
	}
	a.write([]byte("data: [DONE]\n\n"))
}

func (a *answer) send(v any) {
	b, err := json.Marshal(v)
	if err != nil {
		b = []byte(fmt.Sprintf(`{"error":{"message":%q,"type":"server_error","param":null,"code":null}}`, err.Error()))
	}
	a.write([]byte("data: " + string(b) + "\n\n"))
}

func (a *answer) write(b []byte) {
	if a.broken {
		return
	}
	if _, err := a.w.Write(b); err != nil {
		a.broken = true
		return
	}
	if a.flush != nil {
		a.flush.Flush()
	}
}
