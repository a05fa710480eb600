package serve

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/tokenize"
)

// Options configure a Server; zero values take the defaults.
type Options struct {
	// MaxBodyBytes refuses larger request bodies with 413 (default 4 MiB).
	MaxBodyBytes int64
	// BodyTimeout bounds reading a request's body, which happens before
	// the request takes a concurrency slot; a client slower than that gets
	// 408 and its connection closed (default 30 seconds).
	BodyTimeout time.Duration
	// MaxModelLen bounds prompt + completion tokens; longer requests get
	// 400 context_length_exceeded. Default and ceiling: what the model's
	// positions and the batcher's cache allow one sequence.
	MaxModelLen int
	// DefaultMaxTokens is the completion length when a request names none
	// (default 1024), cut to what the prompt leaves of MaxModelLen.
	DefaultMaxTokens int
	// MaxConcurrent is the most generation requests answered at once
	// (queued or decoding); more get 429 (default 64).
	MaxConcurrent int
	// RequestTimeout bounds one request, queueing included; a request that
	// runs out gets 504 (default 10 minutes).
	RequestTimeout time.Duration
	// Reasoning puts the <think> part of chat answers in reasoning_content
	// unless a request says otherwise (separate_reasoning).
	Reasoning bool
	Batcher   lm.BatcherOptions
	Logger    *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 4 << 20
	}
	if o.BodyTimeout <= 0 {
		o.BodyTimeout = 30 * time.Second
	}
	if o.Batcher.MaxRows <= 0 {
		o.Batcher.MaxRows = 32
	}
	if o.DefaultMaxTokens <= 0 {
		o.DefaultMaxTokens = 1024
	}
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 64
	}
	// The server's limit answers first (429), never the batcher's queue.
	o.Batcher.MaxQueue = max(o.Batcher.MaxQueue, o.MaxConcurrent)
	if o.RequestTimeout <= 0 {
		o.RequestTimeout = 10 * time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o
}

// Server answers OpenAI-style requests for one model from one Batcher.
type Server struct {
	m        *Model
	defaults SamplingDefaults
	b        *lm.Batcher
	o        Options
	met      *metrics
	sem      chan struct{}
	draining atomic.Bool
	abort    context.Context // canceled when a shutdown gives up waiting
	abortFn  context.CancelFunc
	created  int64
	seq      atomic.Uint64
}

// ErrMaxModelLen is New's error for an Options.MaxModelLen past the model's
// positions (cutting it silently would serve another limit than asked).
var ErrMaxModelLen = errors.New("max model length")

// New starts the batcher over m. Close (or Serve's shutdown) stops it.
func New(m *Model, o Options) (*Server, error) {
	o = o.withDefaults()
	// OpenAI's defaults (temperature 1, no top_p/top_k) where the model's
	// generation_config.json gives none.
	defaults, err := ReadSamplingDefaults(m.LM.Generation, lm.Sampling{Temperature: 1})
	if err != nil {
		return nil, err
	}
	if o.Batcher.EOS == nil {
		o.Batcher.EOS = m.EOS
	}
	b, err := lm.NewBatcher(m.LM, o.Batcher)
	if err != nil {
		return nil, err
	}
	switch limit := b.MaxPositions(); {
	case o.MaxModelLen > limit && limit == b.CachePositions() && limit < modelPositions(m):
		b.Close()
		return nil, fmt.Errorf("%w: %d, but the KV cache (--kv-cache-mb) holds %d positions (the model has %d): raise --kv-cache-mb, or want ≤ %d, or 0", ErrMaxModelLen, o.MaxModelLen, limit, modelPositions(m), limit)
	case o.MaxModelLen > limit:
		b.Close()
		return nil, fmt.Errorf("%w: %d, but the model has %d positions (max_position_embeddings): want ≤ %d, or 0 for all of them", ErrMaxModelLen, o.MaxModelLen, limit, limit)
	case o.MaxModelLen <= 0:
		o.MaxModelLen = limit
	}
	s := &Server{m: m, defaults: defaults, b: b, o: o, met: newMetrics(), sem: make(chan struct{}, o.MaxConcurrent), created: time.Now().Unix()}
	s.abort, s.abortFn = context.WithCancel(context.Background())
	return s, nil
}

// SamplingDefaults are the temperature, top_p and top_k of requests that
// leave them out.
func (s *Server) SamplingDefaults() SamplingDefaults { return s.defaults }

// MaxModelLen is the longest prompt + completion the server accepts.
func (s *Server) MaxModelLen() int { return s.o.MaxModelLen }

// ContextLimit says what sets MaxModelLen: "--max-model-len", the KV cache
// budget ("--kv-cache-mb", when it holds fewer positions than the model
// has) or the model's "max_position_embeddings".
func (s *Server) ContextLimit() string {
	switch n := s.o.MaxModelLen; {
	case n < s.b.MaxPositions():
		return "--max-model-len"
	case n == s.b.CachePositions() && n < modelPositions(s.m):
		return "--kv-cache-mb"
	}
	return "max_position_embeddings"
}

// modelPositions is the model's max_position_embeddings (0: not known).
func modelPositions(m *Model) int {
	if c := m.LM.Config; c != nil {
		return max(c.MaxPositions, c.NPositions)
	}
	return 0
}

// Running is the number of generation requests being answered (queued or
// decoding).
func (s *Server) Running() int { return len(s.sem) }

// Close cancels what is running and stops the batcher.
func (s *Server) Close() error {
	s.abortFn()
	return s.b.Close()
}

// Serve answers on ln until ctx ends, then shuts down gracefully: new
// requests are refused (503), the running ones finish within drain, after
// which they are canceled; it returns nil once all is stopped.
func (s *Server) Serve(ctx context.Context, ln net.Listener, drain time.Duration) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 30 * time.Second,
		BaseContext: func(net.Listener) context.Context { return context.Background() }}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		s.Close()
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.o.Logger.Info("shutting down: finishing running requests", "drain", drain.String())
	deadline := time.Now().Add(drain)
	// The listener stays open while the running requests finish, so a new
	// one gets 503 (and /health says draining) instead of a refused
	// connection; Shutdown then closes it and waits for any straggler.
	for len(s.sem) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	dctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	if err := hs.Shutdown(dctx); err != nil {
		s.o.Logger.Warn("drain time over: canceling running requests")
		s.abortFn()
		// Every generation holds a slot from admit until its handler
		// returns, so an empty semaphore means they have all ended (a
		// WaitGroup here raced with a handler admitted just before the
		// drain that had not yet counted itself).
		for stop := time.Now().Add(5 * time.Second); len(s.sem) > 0 && time.Now().Before(stop); {
			time.Sleep(10 * time.Millisecond)
		}
		// A handler that has returned may not have written its last chunk
		// yet: a second Shutdown lets those connections end cleanly, so a
		// canceled stream still ends with its error event, then Close.
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		hs.Shutdown(sctx)
		scancel()
		hs.Close()
	}
	s.abortFn()
	s.b.Close()
	<-errc
	return nil
}

// Handler routes the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	// route registers a handler counted under endpoint in the metrics;
	// another method than method ("": any) gets 405.
	route := func(pattern, endpoint, method string, h func(http.ResponseWriter, *http.Request)) {
		mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
			rec := &recorder{ResponseWriter: w, code: 200}
			defer func() { s.met.request(endpoint, rec.code) }()
			if method != "" && r.Method != method {
				rec.Header().Set("Allow", method)
				s.fail(rec, newError(405, "invalid_request_error", "method_not_allowed", "", "%s %s: use %s", r.Method, r.URL.Path, method))
				return
			}
			h(rec, r)
		})
	}
	route("/v1/chat/completions", "chat", http.MethodPost, s.handleChat)
	route("/v1/completions", "completions", http.MethodPost, s.handleCompletions)
	route("/v1/models", "models", http.MethodGet, s.handleModels)
	route("/v1/models/{id}", "models", http.MethodGet, s.handleModel)
	route("/health", "health", http.MethodGet, s.handleHealth)
	route("/metrics", "metrics", http.MethodGet, s.handleMetrics)
	route("/", "other", "", func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, newError(404, "invalid_request_error", "not_found", "", "no route %s; the API is /v1/chat/completions, /v1/completions, /v1/models, /health, /metrics", r.URL.Path))
	})
	return mux
}

// recorder keeps the status code for the metrics and passes flushes on.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (the body's
// read deadline).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) fail(w http.ResponseWriter, e *apiError) {
	if e.Status == 429 || e.Status == 503 {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, e.Status, map[string]*apiError{"error": e})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = 500, []byte(`{"error":{"message":"encode response","type":"server_error","param":null,"code":null}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, 503, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, 200, map[string]string{"status": "ok", "model": s.m.Name})
}

func (s *Server) handleMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.met.write(w, s.b.Stats(), s.m.Name)
}

func (s *Server) card() modelCard {
	return modelCard{ID: s.m.Name, Object: "model", Created: s.created, OwnedBy: "tagpr", MaxModelLen: s.o.MaxModelLen}
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"object": "list", "data": []modelCard{s.card()}})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request) {
	if id := r.PathValue("id"); id != s.m.Name {
		s.fail(w, s.unknownModel(id))
		return
	}
	writeJSON(w, 200, s.card())
}

func (s *Server) unknownModel(id string) *apiError {
	return newError(404, "invalid_request_error", "model_not_found", "model", "the model %q does not exist; this server serves %q", id, s.m.Name)
}

// admit reads the JSON body into v (413 past the size limit, 408 when the
// client does not send it within BodyTimeout, 400 for malformed JSON or
// unknown fields), then takes a concurrency slot (429 when none is free,
// 503 while shutting down). The body is read first, so a slow client
// cannot hold a slot.
func (s *Server) admit(w http.ResponseWriter, r *http.Request, v any) (release func(), e *apiError) {
	if s.draining.Load() {
		return nil, errShuttingDown()
	}
	if e := s.decodeBody(w, r, v); e != nil {
		return nil, e
	}
	if s.draining.Load() {
		return nil, errShuttingDown()
	}
	select {
	case s.sem <- struct{}{}:
	default:
		return nil, newError(429, "rate_limit_error", "too_many_requests", "", "%d requests are being answered, the most this server takes at once (--max-concurrent); retry later", s.o.MaxConcurrent)
	}
	return func() { <-s.sem }, nil
}

func errShuttingDown() *apiError {
	return newError(503, "server_error", "shutting_down", "", "the server is shutting down; retry on another replica")
}

// decodeBody reads the whole body, at most MaxBodyBytes within
// BodyTimeout, and decodes it into v.
func (s *Server) decodeBody(w http.ResponseWriter, r *http.Request, v any) *apiError {
	// A read deadline on the connection for the body only, lifted once the
	// body is in: left on, it would end net/http's background read (which
	// notices a client that leaves) and so cancel the answer.
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(s.o.BodyTimeout)) == nil {
		defer rc.SetReadDeadline(time.Time{})
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.o.MaxBodyBytes))
	if err != nil {
		var mb *http.MaxBytesError
		switch {
		case errors.As(err, &mb):
			return newError(413, "invalid_request_error", "request_too_large", "", "the request body is larger than %d bytes (--max-body-bytes)", s.o.MaxBodyBytes)
		case errors.Is(err, os.ErrDeadlineExceeded):
			w.Header().Set("Connection", "close")
			return newError(408, "invalid_request_error", "request_timeout", "", "the request body did not arrive within %s (--body-timeout)", s.o.BodyTimeout)
		default:
			return badRequest("", "reading the body: %v", err)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var ut *json.UnmarshalTypeError
		switch {
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			field := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(field, "unrecognized request argument supplied: %s", field)
		case errors.As(err, &ut):
			return typeError(ut)
		default:
			return badRequest("", "the body is not valid JSON: %v", err)
		}
	}
	if dec.More() {
		return badRequest("", "the body holds more than one JSON value")
	}
	return nil
}

// typeError names a wrongly typed value by its JSON path as the client wrote
// it ("max_tokens", "messages.role": no Go struct names) and says in JSON's
// words what was expected.
func typeError(ut *json.UnmarshalTypeError) *apiError {
	var path []string
	for _, f := range strings.Split(ut.Field, ".") {
		if f != "" && f != "samplingParams" { // the embedded struct: its fields are the request's own
			path = append(path, f)
		}
	}
	want := "a value of another type"
	if ut.Type == reflect.TypeOf(stopList(nil)) {
		want = "a string or a list of strings"
	} else if ut.Type != nil {
		switch ut.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			want = "an integer"
			if n := strings.TrimPrefix(ut.Value, "number "); n != ut.Value && !strings.ContainsAny(n, ".eE") {
				want = fmt.Sprintf("an integer that fits in %d bits", ut.Type.Bits())
			}
		case reflect.Float32, reflect.Float64:
			want = "a number"
		case reflect.String:
			want = "a string"
		case reflect.Bool:
			want = "true or false"
		case reflect.Slice, reflect.Array:
			want = "a list"
		case reflect.Struct, reflect.Map:
			want = "an object"
		}
	}
	if len(path) == 0 {
		return badRequest("", "the body must be a JSON object (the request), not a JSON %s", ut.Value)
	}
	param := strings.Join(path, ".")
	return badRequest(param, "%s: want %s, got a JSON %s", param, want, ut.Value)
}

// plan is a validated generation request: one batcher request per prompt.
type plan struct {
	chat         bool
	prompts      [][]int64
	opensThink   []bool // chat: the rendered prompt ends inside <think>
	reqs         []lm.Request
	n            int
	stream       bool
	includeUsage bool
	split        bool // chat: separate reasoning_content
	logProbs     bool
	topLogProbs  int
	stops        []string
}

// sampling checks what chat and text completions share and fills the
// request template (MaxNewTokens is set per prompt later).
func (s *Server) sampling(p *samplingParams, maxTokens *int, maxParam string) (lm.Request, *apiError) {
	var r lm.Request
	if p.Model != "" && p.Model != s.m.Name {
		return r, s.unknownModel(p.Model)
	}
	if p.Model == "" {
		return r, badRequest("model", "model is required (this server serves %q)", s.m.Name)
	}
	r.N = 1
	if p.N != nil {
		if maxN := min(128, s.o.Batcher.MaxRows); *p.N < 1 || *p.N > maxN {
			return r, badRequest("n", "n is %d; want 1 to %d (--max-batch)", *p.N, maxN)
		}
		r.N = *p.N
	}
	r.Sampling = s.defaults.Sampling
	if t := p.Temperature; t != nil {
		if !(*t >= 0 && *t <= 2) || *t > 0 && *t < lm.MinTemperature {
			return r, badRequest("temperature", "temperature is %v; want 0 (greedy) or %g to 2", *t, lm.MinTemperature)
		}
		r.Temperature = *t
	}
	if t := p.TopP; t != nil {
		if !(*t > 0 && *t <= 1) {
			return r, badRequest("top_p", "top_p is %v; want a value in (0, 1]", *t)
		}
		r.TopP = *t
	}
	if k := p.TopK; k != nil {
		if *k < -1 {
			return r, badRequest("top_k", "top_k is %d; want -1 or 0 (off) or a positive count", *k)
		}
		r.TopK = max(*k, 0)
	}
	if maxTokens != nil {
		if *maxTokens < 1 {
			return r, badRequest(maxParam, "%s is %d; want at least 1", maxParam, *maxTokens)
		}
		r.MaxNewTokens = *maxTokens
	}
	if len(p.Stop) > 4 {
		return r, badRequest("stop", "%d stop strings; at most 4", len(p.Stop))
	}
	for i, st := range p.Stop {
		if st == "" {
			return r, badRequest("stop", "stop string %d is empty", i)
		}
	}
	r.StopStrings = p.Stop
	if p.Seed != nil {
		r.Seed = uint64(*p.Seed)
	} else {
		r.Seed = uint64(time.Now().UnixNano()) ^ s.seq.Add(1)<<32
	}
	r.IgnoreEOS = p.IgnoreEOS
	for _, f := range []struct {
		name string
		v    *float64
		to   *float64
	}{{"frequency_penalty", p.FrequencyPenalty, &r.FrequencyPenalty}, {"presence_penalty", p.PresencePenalty, &r.PresencePenalty}} {
		if f.v == nil {
			continue
		}
		if !(*f.v >= -2 && *f.v <= 2) {
			return r, badRequest(f.name, "%s is %v; want -2 to 2 (0: off)", f.name, *f.v)
		}
		*f.to = *f.v
	}
	if rp := p.RepetitionPenalty; rp != nil {
		if !(*rp > 0 && *rp <= math.MaxFloat64) {
			return r, badRequest("repetition_penalty", "repetition_penalty is %v; want a finite number > 0 (1: off)", *rp)
		}
		r.RepetitionPenalty = *rp
	}
	if len(p.LogitBias) > 0 {
		return r, badRequest("logit_bias", "logit_bias is not supported by this server")
	}
	return r, nil
}

// lengths sets each prompt's completion budget and refuses what does not
// fit MaxModelLen.
func (s *Server) lengths(p *plan, tmpl lm.Request, maxParam string) *apiError {
	limit := s.o.MaxModelLen
	promptParam, which := "messages", "the prompt"
	if !p.chat {
		promptParam = "prompt"
	}
	for i, ids := range p.prompts {
		if len(ids) == 0 {
			return badRequest("prompt", "prompt %d is empty", i)
		}
		if len(p.prompts) > 1 {
			which = fmt.Sprintf("prompt %d", i)
		}
		if len(ids) >= limit {
			return newError(400, "invalid_request_error", "context_length_exceeded", promptParam,
				"this model's maximum context length is %d tokens; %s has %d tokens, leaving none for the completion", limit, which, len(ids))
		}
		r := tmpl
		r.Prompt = ids
		if r.MaxNewTokens == 0 {
			r.MaxNewTokens = min(s.o.DefaultMaxTokens, limit-len(ids))
		} else if len(ids)+r.MaxNewTokens > limit {
			return newError(400, "invalid_request_error", "context_length_exceeded", maxParam,
				"this model's maximum context length is %d tokens; %s has %d tokens and %s asks for %d (total %d); lower %s or shorten the prompt",
				limit, which, len(ids), maxParam, r.MaxNewTokens, len(ids)+r.MaxNewTokens, maxParam)
		}
		if need, budget := r.N*(len(ids)+r.MaxNewTokens), s.b.CachePositions(); need > budget {
			param := maxParam
			if r.N > 1 {
				param = "n"
			}
			return badRequest(param, "n %d × (prompt %d + %s %d tokens) = %d KV-cache positions; this server's cache holds %d (--kv-cache-mb): lower n or %s, or restart the server with a larger --kv-cache-mb",
				r.N, len(ids), maxParam, r.MaxNewTokens, need, budget, maxParam)
		}
		if len(r.StopStrings) > 0 {
			r.Detokenize = s.m.Decode
		}
		p.reqs = append(p.reqs, r)
	}
	return nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req chatRequest
	s.serveGeneration(w, r, &req, func() (*plan, *apiError) { return s.planChat(&req) })
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	var req completionRequest
	s.serveGeneration(w, r, &req, func() (*plan, *apiError) { return s.planCompletion(&req) })
}

// serveGeneration admits a request (reading its body into req), plans it
// and answers it.
func (s *Server) serveGeneration(w http.ResponseWriter, r *http.Request, req any, planFn func() (*plan, *apiError)) {
	release, e := s.admit(w, r, req)
	if e != nil {
		s.fail(w, e)
		return
	}
	defer release()
	p, e := planFn()
	if e != nil {
		s.fail(w, e)
		return
	}
	s.generate(w, r, p)
}

func (s *Server) planChat(req *chatRequest) (*plan, *apiError) {
	maxTokens, maxParam := req.MaxTokens, "max_tokens"
	if req.MaxCompletionTokens != nil {
		maxTokens, maxParam = req.MaxCompletionTokens, "max_completion_tokens"
	}
	tmpl, e := s.sampling(&req.samplingParams, maxTokens, maxParam)
	if e != nil {
		return nil, e
	}
	if len(req.Tools) > 0 {
		return nil, badRequest("tools", "tool calling is not supported by this server")
	}
	if tc := strings.TrimSpace(string(req.ToolChoice)); tc != "" && tc != "null" && tc != `"none"` && tc != `"auto"` {
		return nil, badRequest("tool_choice", "tool calling is not supported by this server")
	}
	if rf := req.ResponseFormat; rf != nil && rf.Type != "" && rf.Type != "text" {
		return nil, badRequest("response_format", "response_format %q is not supported; only text", rf.Type)
	}
	if req.TopLogProbs != nil {
		if *req.TopLogProbs < 0 || *req.TopLogProbs > lm.MaxTopLogProbs {
			return nil, badRequest("top_logprobs", "top_logprobs is %d; want 0 to %d", *req.TopLogProbs, lm.MaxTopLogProbs)
		}
		if *req.TopLogProbs > 0 && !req.LogProbs {
			return nil, badRequest("top_logprobs", "top_logprobs needs logprobs: true")
		}
		tmpl.TopLogProbs = *req.TopLogProbs
	}
	tmpl.LogProbs = req.LogProbs
	if len(req.Messages) == 0 {
		return nil, badRequest("messages", "messages is empty")
	}
	msgs, e := chatMessages(req.Messages, s.m.Tok.ChatFormat().AssistantBody != nil)
	if e != nil {
		return nil, e
	}
	copts, e := chatOptions(req.ChatTemplateKwargs)
	if e != nil {
		return nil, e
	}
	ids, text, err := s.m.EncodeChatWith(msgs, copts)
	if err != nil {
		return nil, badRequest("messages", "%v", err)
	}
	p := &plan{chat: true, prompts: [][]int64{ids}, opensThink: []bool{promptOpensThink(text)}, n: tmpl.N,
		stream: req.Stream, logProbs: req.LogProbs, topLogProbs: tmpl.TopLogProbs, stops: tmpl.StopStrings, split: s.o.Reasoning}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = req.StreamOptions.IncludeUsage
	}
	if req.SeparateReasoning != nil {
		p.split = *req.SeparateReasoning
	}
	if e := s.lengths(p, tmpl, maxParam); e != nil {
		return nil, e
	}
	return p, nil
}

func (s *Server) planCompletion(req *completionRequest) (*plan, *apiError) {
	tmpl, e := s.sampling(&req.samplingParams, req.MaxTokens, "max_tokens")
	if e != nil {
		return nil, e
	}
	if req.Echo {
		return nil, badRequest("echo", "echo is not supported by this server")
	}
	if req.Suffix != nil && *req.Suffix != "" {
		return nil, badRequest("suffix", "suffix is not supported by this server")
	}
	if req.BestOf != nil && *req.BestOf != tmpl.N {
		return nil, badRequest("best_of", "best_of other than n is not supported by this server")
	}
	if lp := req.LogProbs; lp != nil {
		if *lp < 0 || *lp > 5 {
			return nil, badRequest("logprobs", "logprobs is %d; want 0 to 5", *lp)
		}
		tmpl.LogProbs, tmpl.TopLogProbs = true, *lp
	}
	texts, ids, err := req.prompts()
	if err != nil {
		return nil, badRequest("prompt", "%v", err)
	}
	for _, t := range texts {
		ids = append(ids, s.m.EncodeText(t))
	}
	V := int64(s.m.LM.Layout.Vocab)
	for i, p := range ids {
		for j, id := range p {
			if id < 0 || id >= V {
				return nil, badRequest("prompt", "prompt %d token %d: id %d is outside the vocabulary [0, %d)", i, j, id, V)
			}
		}
	}
	if len(ids)*tmpl.N > 128 {
		return nil, badRequest("prompt", "%d prompts × n %d completions; at most 128 in one request", len(ids), tmpl.N)
	}
	p := &plan{prompts: ids, n: tmpl.N, stream: req.Stream, logProbs: tmpl.LogProbs, topLogProbs: tmpl.TopLogProbs, stops: tmpl.StopStrings}
	if req.StreamOptions != nil {
		if !req.Stream {
			return nil, badRequest("stream_options", "stream_options is only allowed with stream: true")
		}
		p.includeUsage = req.StreamOptions.IncludeUsage
	}
	if e := s.lengths(p, tmpl, "max_tokens"); e != nil {
		return nil, e
	}
	return p, nil
}

// chatOptions reads chat_template_kwargs: enable_thinking (Qwen3's
// template closes an empty think block for false; the others ignore it,
// as their Jinja does). tagpr runs no Jinja, so any other key is refused
// rather than silently dropped.
func chatOptions(kw map[string]json.RawMessage) (tokenize.ChatOptions, *apiError) {
	o := tokenize.ChatOptions{AddGenerationPrompt: true}
	keys := make([]string, 0, len(kw))
	for k := range kw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		param := "chat_template_kwargs." + k
		if k != "enable_thinking" {
			return o, badRequest(param, "chat_template_kwargs %q is not supported: tagpr renders chat templates natively and takes enable_thinking only", k)
		}
		if null(kw[k]) {
			continue
		}
		var on bool
		if err := json.Unmarshal(kw[k], &on); err != nil {
			return o, badRequest(param, "enable_thinking is %s; want true or false", kw[k])
		}
		o.DisableThinking = !on
	}
	return o, nil
}

// chatMessages turns the wire messages into the template's turns. An
// assistant turn's reasoning_content goes back in front of its content as
// a think block for a template that reads it (Qwen3's, which keeps it only
// after the last user turn: readsReasoning); the others drop it, as their
// Jinja does.
func chatMessages(in []chatMessageIn, readsReasoning bool) ([]tokenize.Message, *apiError) {
	out := make([]tokenize.Message, len(in))
	for i, m := range in {
		role := m.Role
		switch role {
		case "system", "user", "assistant":
		case "developer": // OpenAI's newer name for system
			role = "system"
		default:
			return nil, badRequest(fmt.Sprintf("messages[%d].role", i), "message %d has role %q; want system, developer, user or assistant", i, m.Role)
		}
		if tc := strings.TrimSpace(string(m.ToolCalls)); !null(m.ToolCalls) && tc != "[]" {
			return nil, badRequest(fmt.Sprintf("messages[%d].tool_calls", i), "message %d has tool_calls: tool calling is not supported by this server", i)
		}
		// As OpenAI: only an assistant turn may come without content (null
		// or left out); a system or user turn without it is a client bug,
		// not an empty message.
		if null(m.Content) && role != "assistant" {
			return nil, badRequest(fmt.Sprintf("messages[%d].content", i), "message %d (%s) has no content (null or missing); send a string or a list of text parts", i, m.Role)
		}
		text, err := m.text()
		if err != nil {
			return nil, badRequest(fmt.Sprintf("messages[%d].content", i), "message %d: %v", i, err)
		}
		if m.ReasoningContent != "" && role == "assistant" && readsReasoning {
			text = thinkOpen + "\n" + m.ReasoningContent + "\n" + thinkClose + "\n\n" + text
		}
		out[i] = tokenize.Message{Role: role, Content: text}
	}
	return out, nil
}

func (s *Server) newID(prefix string) string {
	return prefix + strconv.FormatInt(time.Now().UnixNano(), 36) + strconv.FormatUint(s.seq.Add(1), 36)
}
