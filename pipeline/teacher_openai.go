package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tagpr/tagpr/datasets"
)

// OpenAIConfig points at any OpenAI-compatible chat-completions endpoint.
type OpenAIConfig struct {
	BaseURL   string // e.g. https://api.openai.com/v1; "/chat/completions" is appended
	Model     string
	APIKeyEnv string // name of the environment variable holding the key; "" = send no key (local servers)

	Temperature float64
	MaxTokens   int // 0: the server's default

	Timeout     time.Duration // per request (default 120s)
	MaxRetries  int           // retries after a 429, a 5xx or a transport error (default 4; <0: none)
	Backoff     time.Duration // first retry delay, doubled each retry (default 1s)
	MaxBackoff  time.Duration // cap on one delay, Retry-After included (default 60s)
	Concurrency int           // requests in flight (default 4)

	// BaseURLKey and ModelKey name where the user set BaseURL and Model,
	// for errors (default: the run config's teacher.base_url and
	// teacher.model; `tagpr chains generate` names its flags).
	BaseURLKey string
	ModelKey   string
}

func (c OpenAIConfig) withDefaults() OpenAIConfig {
	if c.Timeout <= 0 {
		c.Timeout = 120 * time.Second
	}
	if c.MaxRetries == 0 {
		c.MaxRetries = 4
	}
	if c.MaxRetries < 0 {
		c.MaxRetries = 0
	}
	if c.Backoff <= 0 {
		c.Backoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 60 * time.Second
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.BaseURLKey == "" {
		c.BaseURLKey = "teacher.base_url"
	}
	if c.ModelKey == "" {
		c.ModelKey = "teacher.model"
	}
	return c
}

// OpenAITeacher is a chat-completions client with retries and bounded
// concurrency.
type OpenAITeacher struct {
	cfg      OpenAIConfig
	endpoint string
	shown    string // endpoint with a password in it masked: what errors show
	// shownBase is the base URL so masked: what the name shows.
	shownBase string
	key       string
	azureKey  bool // send key as api-key (Azure's deployment endpoints)
	client    *http.Client
	// completionTokens: the server refused max_tokens and asked for
	// max_completion_tokens; every request after it sends that.
	completionTokens atomic.Bool
}

// NewOpenAITeacher checks the config and reads the API key from its
// environment variable (an empty or unset variable, when one is named, is an
// error: a run should not discover it after the first request).
func NewOpenAITeacher(cfg OpenAIConfig) (*OpenAITeacher, error) {
	cfg = cfg.withDefaults()
	base := strings.TrimRight(cfg.BaseURL, "/")
	if !strings.HasPrefix(base, "http://") && !strings.HasPrefix(base, "https://") {
		return nil, fmt.Errorf("openai teacher: %s %q: want http:// or https://", cfg.BaseURLKey, cfg.BaseURL)
	}
	if cfg.Model == "" {
		return nil, fmt.Errorf("openai teacher: no model named (set %s)", cfg.ModelKey)
	}
	endpoint, err := endpointURL(base, "/chat/completions")
	if err != nil {
		return nil, fmt.Errorf("openai teacher: %s %q: %w", cfg.BaseURLKey, cfg.BaseURL, err)
	}
	t := &OpenAITeacher{cfg: cfg, endpoint: endpoint, shown: RedactURL(endpoint), shownBase: RedactURL(base), client: &http.Client{Timeout: cfg.Timeout}}
	// Azure OpenAI's deployment endpoints (…/openai/deployments/NAME?api-version=…)
	// take a key in api-key, not as a bearer token (its /openai/v1 takes both).
	t.azureKey = strings.Contains(endpoint, "/openai/deployments/")
	if cfg.APIKeyEnv != "" {
		t.key = os.Getenv(cfg.APIKeyEnv)
		if t.key == "" {
			return nil, fmt.Errorf("openai teacher: environment variable %s (the API key) is empty or unset", cfg.APIKeyEnv)
		}
	}
	return t, nil
}

// Name is "openai:MODEL@BASEURL".
func (t *OpenAITeacher) Name() string {
	return "openai:" + t.cfg.Model + "@" + t.shownBase
}

// endpointURL appends path (/chat/completions) to the base URL's path and
// keeps its query (a gateway's or Azure's ?api-version=… goes after the
// path, not before it).
func endpointURL(base, path string) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	if u.Host == "" {
		return "", fmt.Errorf("no host")
	}
	if u.Fragment != "" {
		return "", fmt.Errorf("a #fragment is never sent to a server: remove it")
	}
	u.Path = strings.TrimRight(u.Path, "/") + path
	u.RawPath = ""
	return u.String(), nil
}

// Complete sends one request per prompt, at most Concurrency at a time. The
// first request that fails for good cancels the rest and is returned, as a
// *PartialError with the replies that did come back.
func (t *OpenAITeacher) Complete(ctx context.Context, prompts [][]datasets.Message) ([]Completion, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	out := make([]Completion, len(prompts))
	errs := make([]error, len(prompts))
	sem := make(chan struct{}, t.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range prompts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				errs[i] = ctx.Err()
				return
			}
			defer func() { <-sem }()
			out[i], errs[i] = t.completeOne(ctx, prompts[i])
			if errs[i] != nil {
				cancel()
			}
		}()
	}
	wg.Wait()
	// Report the root cause, not the cancellations it triggered.
	var cause, first error
	done := make([]bool, len(prompts))
	for i, err := range errs {
		done[i] = err == nil
		if err != nil && cause == nil && !errors.Is(err, context.Canceled) {
			cause = err
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if cause == nil && first != nil {
		cause = fmt.Errorf("teacher %s: %w", t.shown, first)
	}
	if cause != nil {
		return out, &PartialError{Err: cause, Done: done}
	}
	return out, nil
}

type chatRequest struct {
	Model       string        `json:"model"`
	Messages    []chatMessage `json:"messages"`
	Temperature float64       `json:"temperature"`
	MaxTokens   int           `json:"max_tokens,omitempty"`
	// MaxCompletionTokens replaces MaxTokens for servers that refuse it
	// (OpenAI's reasoning models: o1, o3, o4-mini, gpt-5).
	MaxCompletionTokens int `json:"max_completion_tokens,omitempty"`
}

type chatMessage struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type chatResponse struct {
	Choices []struct {
		Message struct {
			Content string `json:"content"`
			// Reasoning servers (vLLM, SGLang, llama.cpp or tagpr serve
			// with a reasoning parser) return the <think> part here
			// instead of in content: reasoning_content, or reasoning
			// (vLLM since 0.10, Ollama, OpenRouter).
			ReasoningContent string `json:"reasoning_content"`
			Reasoning        string `json:"reasoning"`
			Refusal          string `json:"refusal"` // OpenAI: the model declined
		} `json:"message"`
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	// Error is an error reported in a 200 response (OpenRouter and some
	// gateways, when the upstream provider failed).
	Error json.RawMessage `json:"error"`
}

// statusError is an HTTP failure; retryable for 429 and 5xx.
type statusError struct {
	endpoint   string
	status     int
	body       string
	raw        string // the whole body, for what the server asks
	hint       string // what to change, when the server's answer says
	retryAfter time.Duration
}

func (e *statusError) Error() string {
	return fmt.Sprintf("teacher POST %s: HTTP %d: %s%s", e.endpoint, e.status, e.body, e.hint)
}

// contextHint names the settings to lower when the server refused the
// prompt plus max_tokens as too long for its model (OpenAI's code, which
// vLLM and tagpr serve also send): max_tokens, or, when the prompt alone
// is too long (which lowering max_tokens cannot mend), the profile items.
func contextHint(status int, raw []byte) string {
	if status == http.StatusBadRequest && bytes.Contains(raw, []byte("context_length_exceeded")) {
		return " (the prompt plus the completion budget exceed the teacher's context: lower teacher.max_tokens in the run config, or --max-tokens;" +
			" a prompt that fills the context on its own needs fewer profile items: retrieval.top_k, or --profile-k)"
	}
	if status == http.StatusTooManyRequests && bytes.Contains(raw, []byte("insufficient_quota")) {
		return " (the account behind the API key is out of credit: add credit, or point the teacher at another key or server)"
	}
	if status == http.StatusBadRequest && bytes.Contains(raw, []byte("'temperature'")) && bytes.Contains(raw, []byte("nly the default (1)")) {
		// OpenAI's reasoning models sample at temperature 1 only.
		return " (this model samples at temperature 1 only: set teacher.temperature: 1 in the run config, or --temperature 1)"
	}
	return ""
}

// promptRefused: the server's content policy refused this one prompt
// (Azure OpenAI's content_filter, OpenAI's invalid_prompt and
// content_policy_violation codes), not the request's settings.
func promptRefused(status int, raw []byte) bool {
	if status != http.StatusBadRequest {
		return false
	}
	var body struct {
		Error struct {
			Code any `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &body) != nil {
		return false
	}
	code, _ := body.Error.Code.(string)
	return code == "content_filter" || code == "invalid_prompt" || code == "content_policy_violation"
}

// notFoundHint names the setting to check when the server answered 404
// (or 400) because it does not know the model, or found no
// chat-completions endpoint at the base URL.
func (t *OpenAITeacher) notFoundHint(status int, raw []byte) string {
	if status != http.StatusNotFound && status != http.StatusBadRequest {
		return ""
	}
	body := strings.ToLower(string(raw))
	if strings.Contains(body, "model_not_found") || strings.Contains(body, "model") &&
		(strings.Contains(body, "does not exist") || strings.Contains(body, "not found") || strings.Contains(body, "unknown")) {
		models, _ := endpointURL(t.shownBase, "/models")
		return fmt.Sprintf(" (the server does not serve the model %s %q: set it to one the server lists at %s)",
			t.cfg.ModelKey, t.cfg.Model, models)
	}
	if status == http.StatusNotFound {
		return fmt.Sprintf(" (no chat-completions endpoint there: check %s %q, which usually ends in /v1)", t.cfg.BaseURLKey, RedactURL(t.cfg.BaseURL))
	}
	return ""
}

// unreachableHint names the setting to check when no server answered at
// the base URL (an unknown host, a refused or unroutable connection); a
// server that answered slowly or hung up is not the address's fault.
func (t *OpenAITeacher) unreachableHint(err error) string {
	var dns *net.DNSError
	var op *net.OpError
	if !errors.As(err, &dns) && !(errors.As(err, &op) && op.Op == "dial") {
		return ""
	}
	return fmt.Sprintf("; no server answered at %s %q: check the URL and that its server is running", t.cfg.BaseURLKey, RedactURL(t.cfg.BaseURL))
}

func (e *statusError) retryable() bool {
	if e.status == http.StatusTooManyRequests && strings.Contains(e.raw, "insufficient_quota") {
		return false // OpenAI's out-of-credit 429: waiting does not bring credit back
	}
	return e.status == http.StatusTooManyRequests || e.status == http.StatusRequestTimeout || e.status >= 500
}

func (t *OpenAITeacher) completeOne(ctx context.Context, msgs []datasets.Message) (Completion, error) {
	req := chatRequest{Model: t.cfg.Model, Temperature: t.cfg.Temperature}
	for _, m := range msgs {
		req.Messages = append(req.Messages, chatMessage{Role: m.Role, Content: m.Content})
	}
	delay := t.cfg.Backoff
	for attempt := 0; ; attempt++ {
		req.MaxTokens, req.MaxCompletionTokens = t.cfg.MaxTokens, 0
		completionTokens := t.completionTokens.Load()
		if completionTokens {
			req.MaxTokens, req.MaxCompletionTokens = 0, t.cfg.MaxTokens
		}
		body, err := json.Marshal(req)
		if err != nil {
			return Completion{}, fmt.Errorf("teacher %s: encode request: %w", t.shown, err)
		}
		text, err := t.post(ctx, body)
		if err == nil {
			return text, nil
		}
		var se *statusError
		if !completionTokens && t.cfg.MaxTokens > 0 && errors.As(err, &se) && se.status == http.StatusBadRequest &&
			strings.Contains(se.raw, "max_completion_tokens") {
			// The same budget under the name the server asks for; not a retry.
			t.completionTokens.Store(true)
			attempt--
			continue
		}
		retry := false
		wait := delay
		switch {
		case ctx.Err() != nil:
			return Completion{}, err
		case errors.As(err, &se):
			retry = se.retryable()
			if se.retryAfter > 0 {
				wait = se.retryAfter
			}
		default:
			// Transport failures (refused, reset, timed out) are worth another try;
			// a malformed response is not: the server would answer the same.
			retry = isTransport(err)
		}
		if !retry || attempt >= t.cfg.MaxRetries {
			if retry {
				return Completion{}, fmt.Errorf("%w (gave up after %d retries%s)", err, attempt, t.unreachableHint(err))
			}
			return Completion{}, err
		}
		select {
		case <-time.After(min(wait, t.cfg.MaxBackoff)):
		case <-ctx.Done():
			return Completion{}, fmt.Errorf("teacher %s: %w (while backing off after: %v)", t.shown, ctx.Err(), err)
		}
		delay *= 2
	}
}

// maxResponseBytes caps a response body read into memory.
const maxResponseBytes = 16 << 20

// transportError marks failures below HTTP (connection, timeout).
type transportError struct{ err error }

func (e transportError) Error() string { return e.err.Error() }
func (e transportError) Unwrap() error { return e.err }

func isTransport(err error) bool {
	var te transportError
	return errors.As(err, &te)
}

func (t *OpenAITeacher) post(ctx context.Context, body []byte) (Completion, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, t.endpoint, bytes.NewReader(body))
	if err != nil {
		return Completion{}, fmt.Errorf("teacher %s: %w", t.shown, err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	switch {
	case t.key == "":
	case t.azureKey:
		hreq.Header.Set("api-key", t.key)
	default:
		hreq.Header.Set("Authorization", "Bearer "+t.key)
	}
	resp, err := t.client.Do(hreq)
	if err != nil {
		return Completion{}, transportError{fmt.Errorf("teacher POST %s: %w", t.shown, err)}
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return Completion{}, transportError{fmt.Errorf("teacher POST %s: read response: %w", t.shown, err)}
	}
	if len(raw) > maxResponseBytes {
		return Completion{}, fmt.Errorf("teacher POST %s: HTTP %d response body exceeds the size cap of %d MiB (a chat completion is far smaller: is the base URL right?)",
			t.shown, resp.StatusCode, maxResponseBytes>>20)
	}
	if promptRefused(resp.StatusCode, raw) {
		// This prompt will be refused again on every rerun: its row records
		// why, and the other prompts go on.
		return Completion{Cut: fmt.Sprintf("the server refused the prompt (HTTP %d): %s", resp.StatusCode, t.snippet(raw))}, nil
	}
	if resp.StatusCode != http.StatusOK {
		se := &statusError{endpoint: t.shown, status: resp.StatusCode, body: t.snippet(raw), raw: string(raw), hint: contextHint(resp.StatusCode, raw) + t.notFoundHint(resp.StatusCode, raw)}
		se.retryAfter = retryAfter(resp.Header, time.Now())
		return Completion{}, se
	}
	var cr chatResponse
	if err := json.Unmarshal(raw, &cr); err != nil {
		return Completion{}, fmt.Errorf("teacher POST %s: malformed response JSON (%v): %s", t.shown, err, t.snippet(raw))
	}
	if len(cr.Choices) == 0 && len(cr.Error) > 0 && string(cr.Error) != "null" {
		// The provider behind a gateway failed: worth another try, as a 5xx.
		return Completion{}, transportError{fmt.Errorf("teacher POST %s: HTTP 200 with an error: %s", t.shown, t.snippet(raw))}
	}
	if len(cr.Choices) == 0 {
		return Completion{}, fmt.Errorf("teacher POST %s: response has no choices: %s", t.shown, t.snippet(raw))
	}
	choice := cr.Choices[0]
	if choice.FinishReason == "error" {
		return Completion{}, transportError{fmt.Errorf("teacher POST %s: the server's generation failed (finish_reason error): %s", t.shown, t.snippet(raw))}
	}
	msg := choice.Message
	c := Completion{Text: msg.Content}
	reasoning := msg.ReasoningContent
	if reasoning == "" {
		reasoning = msg.Reasoning
	}
	if reasoning != "" && !strings.Contains(msg.Content, "<think>") {
		// Put the chain back where the chains stage reads it.
		c.Text = "<think>\n" + strings.Trim(reasoning, "\n") + "\n</think>\n\n" + msg.Content
	}
	switch {
	case msg.Refusal != "":
		c.Cut = "the teacher refused: " + snippet([]byte(msg.Refusal))
	case choice.FinishReason == "length":
		c.Cut = cutAtBudget
	case choice.FinishReason == "content_filter":
		c.Cut = "the server's content filter stopped the teacher's reply (finish_reason content_filter)"
	}
	return c, nil
}

// RedactURL masks the password of a URL's user info (a base URL such as
// http://user:pass@host/v1, for a server behind basic auth), for names,
// errors and recorded settings.
func RedactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	return u.Redacted()
}

// retryAfter is how long the server asked to wait (0: it did not say):
// retry-after-ms (OpenAI, Azure), else Retry-After in seconds or as an
// HTTP date (RFC 9110; proxies and gateways send dates).
func retryAfter(h http.Header, now time.Time) time.Duration {
	if ms, err := strconv.ParseFloat(h.Get("Retry-After-Ms"), 64); err == nil && ms > 0 && ms < 1e9 {
		return time.Duration(ms * float64(time.Millisecond))
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if s, err := strconv.Atoi(v); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if at, err := http.ParseTime(v); err == nil && at.After(now) {
		return at.Sub(now)
	}
	return 0
}

// snippet is a response body for an error message, the API key masked:
// some servers and proxies echo the Authorization header they refused.
func (t *OpenAITeacher) snippet(raw []byte) string {
	if t.key != "" {
		raw = bytes.ReplaceAll(raw, []byte(t.key), []byte("[key from "+t.cfg.APIKeyEnv+"]"))
	}
	return snippet(raw)
}

// snippet keeps error messages readable when a server answers with a page.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		cut := 200
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut-- // not inside a character: the text lands in Arrow verdicts, which must be UTF-8
		}
		s = s[:cut] + "…"
	}
	return s
}
