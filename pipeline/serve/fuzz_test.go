package serve

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// FuzzRequest posts arbitrary bodies to the completion routes of a served
// model: every answer is a success or a client error in OpenAI's shape
// (never a 500, a dropped connection or a body that is not JSON), and a
// stream is well-formed server-sent events ending in [DONE]. The context is
// 64 tokens, so a request that is accepted finishes quickly.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		`{"model":"M","messages":[{"role":"user","content":"hi"}],"max_tokens":3}`,
		`{"model":"M","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"}],"n":2,"temperature":0.7,"seed":1,"max_tokens":2,"logprobs":true,"top_logprobs":2}`,
		`{"model":"M","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":2,"stop":["a","b"]}`,
		`{"model":"M","prompt":"once upon","max_tokens":2,"echo":false}`,
		`{"model":"M","prompt":[1,2,3],"max_tokens":2,"stream":true,"stream_options":{"include_usage":true}}`,
		`{"model":"M","prompt":["a","b"],"max_tokens":1,"top_p":0.5}`,
		`{"model":"M","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"max_tokens":1}`,
	} {
		route := uint8(0) // chat
		if strings.Contains(seed, `"prompt"`) {
			route = 1
		}
		f.Add(route, []byte(seed))
	}
	m := openModel(f, randomDir)
	ts := startServer(f, m, Options{MaxModelLen: 64, MaxConcurrent: 4, Batcher: lm.BatcherOptions{MaxRows: 4}})
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		body = bytes.ReplaceAll(body, []byte(`"M"`), []byte(`"`+m.Name+`"`))
		url := ts.base + []string{"/v1/chat/completions", "/v1/completions"}[route%2]
		resp, err := http.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("POST %s %q: %v (a handler that panics drops the connection)", url, body, err)
		}
		defer resp.Body.Close()
		raw, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("POST %s %q: reading the answer: %v", url, body, err)
		}
		if resp.StatusCode >= 500 || (resp.StatusCode != 200 && resp.StatusCode < 400) {
			t.Fatalf("POST %s %q: status %d: %s", url, body, resp.StatusCode, raw)
		}
		if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			checkEvents(t, body, raw)
			return
		}
		var out map[string]any
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatalf("POST %s %q: status %d, body not JSON: %s", url, body, resp.StatusCode, raw)
		}
		if e, isErr := out["error"].(map[string]any); resp.StatusCode != 200 && (!isErr || e["message"] == "") {
			t.Fatalf("POST %s %q: status %d without an error message: %s", url, body, resp.StatusCode, raw)
		}
	})
}

// checkEvents checks a server-sent event stream: JSON data lines, then
// [DONE] last.
func checkEvents(t *testing.T, body, raw []byte) {
	t.Helper()
	var data []string
	sc := bufio.NewScanner(bytes.NewReader(raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("%q: the stream does not end in [DONE]:\n%s", body, raw)
	}
	for _, d := range data[:len(data)-1] {
		if !json.Valid([]byte(d)) {
			t.Fatalf("%q: an event is not JSON: %s", body, d)
		}
	}
}
