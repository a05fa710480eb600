package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
)

// chatReply writes an OpenAI chat-completions response with one choice.
func chatReply(w http.ResponseWriter, content string) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{
		"id": "chatcmpl-test", "object": "chat.completion", "model": "fake",
		"choices": []map[string]any{{"index": 0, "finish_reason": "stop",
			"message": map[string]string{"role": "assistant", "content": content}}},
	})
}

// readChat decodes a chat-completions request.
func readChat(t *testing.T, r *http.Request) chatRequest {
	t.Helper()
	var req chatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		t.Errorf("server: bad request body: %v", err)
	}
	return req
}

func testTeacher(t *testing.T, url string, mod func(*OpenAIConfig)) *OpenAITeacher {
	t.Helper()
	cfg := OpenAIConfig{BaseURL: url + "/v1", Model: "fake", Backoff: time.Millisecond, MaxBackoff: 20 * time.Millisecond, Timeout: 5 * time.Second}
	if mod != nil {
		mod(&cfg)
	}
	tc, err := NewOpenAITeacher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tc
}

func onePrompt(s string) [][]datasets.Message {
	return [][]datasets.Message{{{Role: "user", Content: s}}}
}

func TestOpenAITeacherSendsRequestAndRetries429(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := hits.Add(1)
		if r.URL.Path != "/v1/chat/completions" || r.Method != http.MethodPost {
			t.Errorf("server: %s %s", r.Method, r.URL.Path)
		}
		if got := r.Header.Get("Authorization"); got != "Bearer sk-test" {
			t.Errorf("server: Authorization %q", got)
		}
		req := readChat(t, r)
		if req.Model != "fake" || len(req.Messages) != 2 || req.Messages[0].Role != "system" || req.Messages[1].Content != "hello" || req.MaxTokens != 77 {
			t.Errorf("server: request %+v", req)
		}
		if n == 1 {
			w.Header().Set("Retry-After", "30") // capped by MaxBackoff
			http.Error(w, `{"error":{"message":"rate limited"}}`, http.StatusTooManyRequests)
			return
		}
		chatReply(w, "hi there")
	}))
	defer srv.Close()
	t.Setenv("TAGPR_TEST_KEY", "sk-test")
	tc := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.APIKeyEnv = "TAGPR_TEST_KEY"; c.MaxTokens = 77 })
	start := time.Now()
	out, err := tc.Complete(context.Background(), [][]datasets.Message{{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hello"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0] != (Completion{Text: "hi there"}) || hits.Load() != 2 {
		t.Fatalf("got %q after %d requests, want \"hi there\" after 2", out, hits.Load())
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Retry-After was not capped by MaxBackoff")
	}
	if want := "openai:fake@" + srv.URL + "/v1"; tc.Name() != want {
		t.Fatalf("name %q, want %q", tc.Name(), want)
	}
}

func TestOpenAITeacherErrors(t *testing.T) {
	cases := []struct {
		name     string
		handler  func(w http.ResponseWriter, r *http.Request)
		wantHits int32
		wantErr  []string
	}{
		{"500 retried then given up", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "upstream exploded", http.StatusInternalServerError)
		}, 3, []string{"HTTP 500", "upstream exploded", "gave up after 2 retries"}},
		{"408 retried then given up", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "request timeout", http.StatusRequestTimeout)
		}, 3, []string{"HTTP 408", "gave up after 2 retries"}},
		{"429 out of credit not retried", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"message":"You exceeded your current quota, please check your plan and billing details.","type":"insufficient_quota","code":"insufficient_quota"}}`, http.StatusTooManyRequests)
		}, 1, []string{"HTTP 429", "out of credit"}},
		{"400 not retried", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":"bad model"}`, http.StatusBadRequest)
		}, 1, []string{"HTTP 400", "bad model"}},
		{"context too long names the setting", func(w http.ResponseWriter, r *http.Request) {
			// the code comes after a long message, past what the error quotes of the body
			http.Error(w, `{"error":{"message":"`+strings.Repeat("this model's maximum context length is 1024 tokens; ", 10)+
				`","type":"invalid_request_error","code":"context_length_exceeded"}}`, http.StatusBadRequest)
		}, 1, []string{"HTTP 400", "lower teacher.max_tokens in the run config, or --max-tokens", "fewer profile items: retrieval.top_k, or --profile-k"}},
		{"unknown model names teacher.model", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"object":"error","message":"The model `+"`fake`"+` does not exist.","type":"NotFoundError","code":404}`, http.StatusNotFound)
		}, 1, []string{"HTTP 404", `the server does not serve the model teacher.model "fake"`, "/v1/models"}},
		{"OpenAI's model_not_found names teacher.model", func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, `{"error":{"message":"`+strings.Repeat("x", 300)+`","code":"model_not_found"}}`, http.StatusNotFound)
		}, 1, []string{"HTTP 404", `teacher.model "fake"`}},
		{"no endpoint names teacher.base_url", func(w http.ResponseWriter, r *http.Request) {
			http.NotFound(w, r)
		}, 1, []string{"HTTP 404", "no chat-completions endpoint there: check teacher.base_url"}},
		{"malformed JSON not retried", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"choices": [{"message": {"content": "unterminated`))
		}, 1, []string{"malformed response JSON"}},
		{"no choices", func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(`{"choices": []}`))
		}, 1, []string{"no choices"}},
		{"timeout retried then given up", func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body) // the server notices a closed connection only once the body is read
			select {
			case <-r.Context().Done():
			case <-time.After(3 * time.Second):
			}
		}, 3, []string{"Timeout", "gave up after 2 retries"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				tc.handler(w, r)
			}))
			defer srv.Close()
			teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.MaxRetries = 2; c.Timeout = 100 * time.Millisecond })
			_, err := teacher.Complete(context.Background(), onePrompt("x"))
			if err == nil {
				t.Fatal("no error")
			}
			msg := err.Error()
			for _, w := range append(tc.wantErr, srv.URL+"/v1/chat/completions") {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
			if hits.Load() != tc.wantHits {
				t.Errorf("%d requests, want %d", hits.Load(), tc.wantHits)
			}
		})
	}
}

func TestOpenAITeacherBoundsConcurrencyAndKeepsOrder(t *testing.T) {
	var mu sync.Mutex
	inFlight, most := 0, 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		inFlight++
		most = max(most, inFlight)
		mu.Unlock()
		req := readChat(t, r)
		time.Sleep(10 * time.Millisecond)
		mu.Lock()
		inFlight--
		mu.Unlock()
		chatReply(w, "echo "+req.Messages[0].Content)
	}))
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.Concurrency = 3 })
	var prompts [][]datasets.Message
	for i := range 12 {
		prompts = append(prompts, onePrompt(fmt.Sprint(i))...)
	}
	out, err := teacher.Complete(context.Background(), prompts)
	if err != nil {
		t.Fatal(err)
	}
	for i, o := range out {
		if o.Text != fmt.Sprintf("echo %d", i) {
			t.Fatalf("completion %d is %q", i, o)
		}
	}
	if most > 3 || most < 1 {
		t.Fatalf("%d requests in flight at once, limit 3", most)
	}
}

func TestOpenAITeacherConfigErrors(t *testing.T) {
	t.Setenv("TAGPR_EMPTY_KEY", "")
	for _, c := range []struct {
		cfg  OpenAIConfig
		want string
	}{
		{OpenAIConfig{BaseURL: "localhost:8080", Model: "m"}, `teacher.base_url "localhost:8080": want http:// or https://`},
		{OpenAIConfig{BaseURL: "http://x/v1"}, "no model named (set teacher.model)"},
		{OpenAIConfig{BaseURL: "http://x/v1", Model: "m", APIKeyEnv: "TAGPR_EMPTY_KEY"}, "TAGPR_EMPTY_KEY"},
	} {
		if _, err := NewOpenAITeacher(c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want one mentioning %q", c.cfg, err, c.want)
		}
	}
}

func TestOpenAITeacherConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	teacher := testTeacher(t, url, func(c *OpenAIConfig) { c.MaxRetries = 1 })
	_, err := teacher.Complete(context.Background(), onePrompt("x"))
	if err == nil || !strings.Contains(err.Error(), url) || !strings.Contains(err.Error(), "gave up after 1 retries") {
		t.Fatalf("error %v", err)
	}
	if want := `no server answered at teacher.base_url "` + url + `/v1"`; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %v; want %q", err, want)
	}
	// The standalone command names its flag.
	teacher = testTeacher(t, url, func(c *OpenAIConfig) { c.MaxRetries = -1; c.BaseURLKey = "--base-url" })
	if _, err = teacher.Complete(context.Background(), onePrompt("x")); err == nil || !strings.Contains(err.Error(), `at --base-url "`+url+`/v1"`) {
		t.Fatalf("error %v; want --base-url named", err)
	}
}

// TestOpenAITeacherSizeCap: a response body over the cap is reported as
// such (issue: "malformed response JSON"), once, not retried.
func TestOpenAITeacherSizeCap(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Write([]byte(`{"choices": [{"message": {"content": "`))
		w.Write([]byte(strings.Repeat("a", maxResponseBytes)))
		w.Write([]byte(`"}}]}`))
	}))
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.MaxRetries = 2; c.Timeout = 30 * time.Second })
	_, err := teacher.Complete(context.Background(), onePrompt("x"))
	if err == nil || !strings.Contains(err.Error(), "exceeds the size cap of 16 MiB") || strings.Contains(err.Error(), "malformed") {
		t.Fatalf("oversized body: %v; want the size cap named", err)
	}
	if hits.Load() != 1 {
		t.Fatalf("%d requests, want 1", hits.Load())
	}
}

// A base URL with a query (a gateway's key, Azure's legacy api-version)
// keeps it after the endpoint's path, not in front of it; Azure's
// deployment endpoints get the key in the api-key header they read.
func TestOpenAITeacherBaseURLQuery(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/openai/deployments/d/chat/completions" || r.URL.Query().Get("api-version") != "2024-10-21" {
			t.Errorf("server: %s ? %s", r.URL.Path, r.URL.RawQuery)
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		if r.Header.Get("api-key") != "azure-key" || r.Header.Get("Authorization") != "" {
			t.Errorf("server: api-key %q, Authorization %q; want the key in api-key alone", r.Header.Get("api-key"), r.Header.Get("Authorization"))
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		chatReply(w, "ok")
	}))
	defer srv.Close()
	t.Setenv("TAGPR_TEST_AZURE_KEY", "azure-key")
	tc, err := NewOpenAITeacher(OpenAIConfig{BaseURL: srv.URL + "/openai/deployments/d/?api-version=2024-10-21", Model: "d", APIKeyEnv: "TAGPR_TEST_AZURE_KEY", Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	out, err := tc.Complete(context.Background(), onePrompt("hi"))
	if err != nil || len(out) != 1 || out[0].Text != "ok" {
		t.Fatalf("got %v, %v", out, err)
	}
	if _, err := NewOpenAITeacher(OpenAIConfig{BaseURL: srv.URL + "/v1#frag", Model: "d"}); err == nil || !strings.Contains(err.Error(), "fragment") {
		t.Errorf("a base URL with a fragment: %v", err)
	}
}
