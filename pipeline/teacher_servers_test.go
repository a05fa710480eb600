package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tagpr/tagpr/datasets"
	"github.com/tagpr/tagpr/rewardmodel"
)

// shapedServer is an OpenAI-compatible endpoint on loopback answering
// example i's prompt with the choice shape(i, example) builds, as real
// servers shape them (reasoning fields, finish reasons, refusals).
func shapedServer(t *testing.T, exs []datasets.Example, shape func(int, *datasets.Example) map[string]any) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := readChat(t, r)
		user := req.Messages[len(req.Messages)-1].Content
		for i := range exs {
			if strings.Contains(user, exs[i].Input) {
				choice := shape(i, &exs[i])
				choice["index"] = 0
				w.Header().Set("Content-Type", "application/json")
				json.NewEncoder(w).Encode(map[string]any{"id": "chatcmpl-test", "object": "chat.completion", "model": "fake",
					"choices": []map[string]any{choice}})
				return
			}
		}
		http.Error(w, "unknown prompt", http.StatusBadRequest)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// freeReasoning is goodFree without its answer line.
func freeReasoning(tag string) string {
	s := goodFree(tag)
	return s[:strings.LastIndex(s, "Answer:")]
}

// shapedChains runs the chains stage against shapedServer and returns its rows.
func shapedChains(t *testing.T, shape func(int, *datasets.Example) map[string]any) ([]datasets.Example, []datasets.Chain) {
	t.Helper()
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	srv := shapedServer(t, exs, shape)
	out := filepath.Join(dir, "chains.arrow")
	cfg := chainsConfig(examples, out, testTeacher(t, srv.URL, nil))
	cfg.Filter.KeepDuplicates = true // the examples of one user share a gold answer, and so the chain
	if _, err := GenerateChains(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return exs, rows
}

// Reasoning models write free-form reasoning inside <think> (DeepSeek-R1
// style in the content, or split off by a vLLM/SGLang reasoning parser and
// put back in front), with the answer after </think>: those chains are
// free-form, labelled, and kept when right.
func TestGenerateChainsLabelsFreeFormThinkChains(t *testing.T) {
	exs, rows := shapedChains(t, func(i int, e *datasets.Example) map[string]any {
		msg := map[string]any{"role": "assistant"}
		switch i % 3 {
		case 0: // R1 in the content, "Answer:" line after </think>
			msg["content"] = "<think>\n" + freeReasoning(e.Output) + "</think>\n\nAnswer: " + e.Output
		case 1: // R1 in the content, the bare answer after </think>
			msg["content"] = "<think>\n" + freeReasoning(e.Output) + "</think>\n\n" + e.Output
		case 2: // a reasoning parser: the reasoning apart, the content only the answer
			msg["reasoning_content"] = freeReasoning(e.Output)
			msg["content"] = "\n\n" + e.Output
		}
		return map[string]any{"message": msg, "finish_reason": "stop"}
	})
	for i, r := range rows {
		if !r.Keep || r.Answer != exs[i].Output || len(r.Spans) != 5 || !strings.HasSuffix(r.Teacher, "; labeller=rule") {
			t.Errorf("row %d: keep %v answer %q (gold %q), %d spans, teacher %q, verdicts %+v\n%s", i, r.Keep, r.Answer, exs[i].Output,
				len(r.Spans), r.Teacher, r.Verdicts, r.Chain)
		}
	}
}

// vLLM (since 0.10), Ollama and OpenRouter name the split-off reasoning
// "reasoning", older vLLM and SGLang "reasoning_content": either is the chain.
func TestOpenAITeacherReadsReasoningFields(t *testing.T) {
	exs, rows := shapedChains(t, func(i int, e *datasets.Example) map[string]any {
		field := []string{"reasoning", "reasoning_content"}[i%2]
		think := e.Chain[strings.Index(e.Chain, "<think>")+len("<think>") : strings.Index(e.Chain, "</think>")]
		return map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", field: think,
			"content": e.Chain[strings.Index(e.Chain, "</think>")+len("</think>"):]}}
	})
	for i, r := range rows {
		if !r.Keep || r.Answer != exs[i].Output || !strings.HasSuffix(r.Teacher, "; labeller=given") {
			t.Errorf("row %d: keep %v answer %q (gold %q), teacher %q, verdicts %+v\n%s", i, r.Keep, r.Answer, exs[i].Output, r.Teacher, r.Verdicts, r.Chain)
		}
	}
}

// A reply the server says is not whole — cut at max_tokens (OpenAI, vLLM,
// llama.cpp, Ollama: finish_reason "length", the reasoning-parser case with
// content null), stopped by a content filter, or refused — is recorded with
// the reason and never kept, though its text may look complete: a free-form
// chain cut inside its "Answer:" line still earns a generation task's
// ROUGE-L threshold.
func TestGenerateChainsRejectsCutReplies(t *testing.T) {
	exs, rows := shapedChains(t, func(i int, e *datasets.Example) map[string]any {
		msg := map[string]any{"role": "assistant", "content": e.Chain}
		finish := "stop"
		switch i {
		case 0: // cut inside the answer line: "Answer: myste"
			free := goodFree(e.Output)
			msg["content"], finish = free[:len(free)-3], "length"
		case 1: // a reasoning parser: the reasoning cut, no content
			msg["reasoning_content"], msg["content"], finish = e.Chain[len("<think>"):len(e.Chain)/2], nil, "length"
		case 2:
			finish = "content_filter"
		case 3:
			msg["content"], msg["refusal"] = nil, "I'm sorry, I can't help with that."
		case 4: // whole: kept
		case 5: // cut right after the answer: cut all the same
			finish = "length"
		}
		return map[string]any{"message": msg, "finish_reason": finish}
	})
	for i, want := range []string{"finish_reason length", "finish_reason length", "content filter", "refused: I'm sorry", "", "finish_reason length"} {
		r := rows[i]
		if want == "" {
			if !r.Keep {
				t.Errorf("row %d: a whole reply was not kept: %+v", i, r.Verdicts)
			}
			continue
		}
		if r.Keep || r.Verdicts[0].Pass || r.Verdicts[1].Pass || !strings.Contains(r.Verdicts[0].Detail, want) || !strings.Contains(r.Verdicts[1].Detail, want) {
			t.Errorf("row %d (gold %q): keep %v, verdicts %+v; want answer and tags failed for %q\n%s", i, exs[i].Output, r.Keep, r.Verdicts, want, r.Chain)
		}
	}
}

// A labelling reply cut at max_tokens is that chain's labelling problem.
func TestTeacherLabellerCutReply(t *testing.T) {
	srv := shapedServer(t, []datasets.Example{{Input: "Steps:"}}, func(int, *datasets.Example) map[string]any {
		return map[string]any{"finish_reason": "length", "message": map[string]any{"role": "assistant", "content": "1: recall_history\n2: infer_preference\n3: conc"}}
	})
	l := TeacherLabeller{Teacher: testTeacher(t, srv.URL, nil), Taxonomy: rewardmodel.DefaultTaxonomy()}
	got, err := l.Label(context.Background(), [][]string{{"a", "b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0].Tags != nil || !strings.Contains(got[0].Problem, "finish_reason length") {
		t.Fatalf("labels %+v, want the cut named", got[0])
	}
}

// A server or proxy that echoes the refused Authorization header in its
// error body does not put the API key in tagpr's error.
func TestOpenAITeacherMasksEchoedKey(t *testing.T) {
	const key = "sk-test-0123456789abcdef"
	t.Setenv("TAGPR_TEST_TEACHER_KEY", key)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"Invalid API key: `+r.Header.Get("Authorization")+`","code":"invalid_api_key"}}`, http.StatusUnauthorized)
	}))
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.APIKeyEnv = "TAGPR_TEST_TEACHER_KEY" })
	_, err := teacher.Complete(context.Background(), onePrompt("x"))
	if err == nil || strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), "Bearer [key from TAGPR_TEST_TEACHER_KEY]") {
		t.Fatalf("error %v: want the echoed key masked", err)
	}
}

// Retry-After as seconds or as an HTTP date, and OpenAI's retry-after-ms,
// set the wait before a retry.
func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 7, 18, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		header, value string
		want          time.Duration
	}{
		{"Retry-After", "7", 7 * time.Second},
		{"Retry-After", "Mon, 07 Dec 2026 18:00:30 GMT", 30 * time.Second},
		{"Retry-After", "Mon, 07 Dec 2026 17:59:00 GMT", 0},
		{"Retry-After", "soon", 0},
		{"Retry-After-Ms", "1500", 1500 * time.Millisecond},
		{"Retry-After", "", 0},
	} {
		h := http.Header{}
		h.Set(c.header, c.value)
		if got := retryAfter(h, now); got != c.want {
			t.Errorf("%s: %q: %v, want %v", c.header, c.value, got, c.want)
		}
	}
}

// A reasoning model labelling steps thinks first (R1 style in the content,
// or a reasoning parser's field put back in front): only the lines after
// its reasoning are its labels.
func TestTeacherLabellerSkipsReasoning(t *testing.T) {
	think := "Step 1 restates the task?\n1: musing\n0: none\nNo: step 1 recalls the history.\n"
	srv := shapedServer(t, []datasets.Example{{Input: "Steps:"}}, func(int, *datasets.Example) map[string]any {
		return map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", "reasoning_content": think,
			"content": "1: recall_history\n2: infer_preference\n3: conclude"}}
	})
	l := TeacherLabeller{Teacher: testTeacher(t, srv.URL, nil), Taxonomy: rewardmodel.DefaultTaxonomy()}
	got, err := l.Label(context.Background(), [][]string{{"a", "b", "c"}})
	if err != nil {
		t.Fatal(err)
	}
	if w := []string{"recall_history", "infer_preference", "conclude"}; strings.Join(got[0].Tags, ",") != strings.Join(w, ",") {
		t.Fatalf("labels %+v, want %q", got[0], w)
	}
}

// A gateway's in-band error (HTTP 200 with an "error" object, or a choice
// with finish_reason "error": OpenRouter when the provider behind it
// failed) is retried like a 5xx, then named.
func TestOpenAITeacherRetriesInBandErrors(t *testing.T) {
	for _, body := range []string{
		`{"error":{"message":"upstream overloaded","code":502}}`,
		`{"choices":[{"index":0,"finish_reason":"error","message":{"role":"assistant","content":"half a cha"},"error":{"message":"provider disconnected","code":502}}]}`,
	} {
		var hits atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if hits.Add(1) <= 2 {
				w.Write([]byte(body))
				return
			}
			chatReply(w, "whole")
		}))
		teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.MaxRetries = 2 })
		got, err := teacher.Complete(context.Background(), onePrompt("x"))
		if err != nil || got[0] != (Completion{Text: "whole"}) || hits.Load() != 3 {
			t.Errorf("%s: %+v, %v after %d requests; want the third answer", body, got, err, hits.Load())
		}
		hits.Store(0)
		teacher = testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.MaxRetries = 1 })
		if _, err := teacher.Complete(context.Background(), onePrompt("x")); err == nil || !strings.Contains(err.Error(), "gave up after 1 retries") ||
			!strings.Contains(err.Error(), "upstream overloaded") && !strings.Contains(err.Error(), "finish_reason error") {
			t.Errorf("%s: error %v, want it named after the retries", body, err)
		}
		srv.Close()
	}
}

// A base URL with a password in it (a server behind basic auth) reaches
// the server, but the password stays out of the teacher's name (the chains'
// teacher column, summary.json, logs) and its errors.
func TestOpenAITeacherMasksURLPassword(t *testing.T) {
	const pass = "hunter2-secret"
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "me" || p != pass {
			t.Errorf("basic auth %q %q %v", u, p, ok)
		}
		if hits.Add(1) == 1 {
			chatReply(w, "fine")
			return
		}
		http.Error(w, "nope", http.StatusBadRequest)
	}))
	defer srv.Close()
	base := strings.Replace(srv.URL, "http://", "http://me:"+pass+"@", 1)
	teacher := testTeacher(t, base, nil)
	if _, err := teacher.Complete(context.Background(), onePrompt("x")); err != nil {
		t.Fatal(err)
	}
	_, err := teacher.Complete(context.Background(), onePrompt("x"))
	if err == nil || strings.Contains(err.Error(), pass) || strings.Contains(teacher.Name(), pass) || !strings.Contains(teacher.Name(), "me:xxxxx@") {
		t.Fatalf("name %q, error %v: want the password masked", teacher.Name(), err)
	}
}

// The chains stamp (run.json of the chains stage and of every stage after
// it) records the base URL without its password.
func TestChainsSettingsMaskURLPassword(t *testing.T) {
	cfg := DefaultRunConfig()
	cfg.Teacher.BaseURL = "https://me:hunter2-secret@llm.example.com/v1"
	r := &runEnv{cfg: cfg, flat: map[string]any{}}
	flatten("", ConfigMap(cfg), r.flat)
	if got := fmt.Sprint(r.chainsSettings()["teacher.base_url"]); got != "https://me:xxxxx@llm.example.com/v1" {
		t.Fatalf("stamped teacher.base_url %q, want the password masked", got)
	}
}

// A prompt the server's content policy refuses (Azure OpenAI's HTTP 400
// content_filter, OpenAI's invalid_prompt) is refused again on every rerun:
// its row records why and the other examples go on, where the run used to
// stop at it for good.
func TestGenerateChainsRecordsRefusedPrompts(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := readChat(t, r).Messages[0].Content
		for i, e := range exs {
			if !strings.Contains(user, e.Input) {
				continue
			}
			switch i {
			case 1:
				http.Error(w, `{"error":{"message":"The response was filtered due to the prompt triggering Azure OpenAI's content management policy.","type":null,"param":"prompt","code":"content_filter","status":400}}`, http.StatusBadRequest)
			case 2:
				http.Error(w, `{"error":{"message":"Invalid prompt: your prompt was flagged as potentially violating our usage policy.","type":"invalid_request_error","param":null,"code":"invalid_prompt"}}`, http.StatusBadRequest)
			default:
				chatReply(w, e.Chain)
			}
			return
		}
	}))
	defer srv.Close()
	out := filepath.Join(dir, "chains.arrow")
	cfg := chainsConfig(examples, out, testTeacher(t, srv.URL, nil))
	cfg.Filter.KeepDuplicates = true
	if _, err := GenerateChains(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		want := map[int]string{1: "content management policy", 2: "flagged"}[i]
		if want == "" && !r.Keep || want != "" && (r.Keep || !strings.Contains(r.Verdicts[1].Detail, "the server refused the prompt (HTTP 400)") ||
			!strings.Contains(r.Verdicts[1].Detail, want)) {
			t.Errorf("row %d: keep %v, verdicts %+v", i, r.Keep, r.Verdicts)
		}
	}
}

// A resumed run (or another shard's worker) with another teacher model or
// sampling settings is refused before it mixes its chains with the parts';
// the same model at another address goes on.
func TestGenerateChainsResumeKeepsTheTeacher(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	var hits atomic.Int32
	srv := fakeChatServer(t, exs, teacherScript(exs), func(i int) bool { return i >= 3 }, &hits)
	defer srv.Close()
	out := filepath.Join(dir, "chains.arrow")
	cfg := chainsConfig(examples, out, testTeacher(t, srv.URL, nil))
	cfg.Settings = map[string]any{"temperature": 0.7}
	if _, err := GenerateChains(context.Background(), cfg); err == nil {
		t.Fatal("the failing examples did not fail")
	}
	other := chainsConfig(examples, out, testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.Model = "another" }))
	other.Settings = map[string]any{"temperature": 0.7}
	if _, err := GenerateChains(context.Background(), other); err == nil || !strings.Contains(err.Error(), `teacher was "openai:fake", now "openai:another"`) {
		t.Fatalf("another teacher model: %v", err)
	}
	cfg.Settings = map[string]any{"temperature": 1.0}
	if _, err := GenerateChains(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), `teacher.temperature was "0.7", now "1"`) {
		t.Fatalf("another temperature: %v", err)
	}
	moved := fakeChatServer(t, exs, teacherScript(exs), nil, &hits)
	defer moved.Close()
	cfg = chainsConfig(examples, out, testTeacher(t, moved.URL, nil))
	cfg.Settings = map[string]any{"temperature": 0.7}
	if st, err := GenerateChains(context.Background(), cfg); err != nil || st.Skipped != 3 || st.Done != 5 {
		t.Fatalf("the same model at another address: %+v, %v", st, err)
	}
}

// A refusal quoted into a verdict is cut at a character boundary: Arrow
// strings must be UTF-8 (pyarrow refuses to read the column otherwise).
func TestRefusalDetailStaysUTF8(t *testing.T) {
	refusal := strings.Repeat("x", 199) + strings.Repeat("申し訳ありません。", 10)
	_, rows := shapedChains(t, func(int, *datasets.Example) map[string]any {
		return map[string]any{"finish_reason": "stop", "message": map[string]any{"role": "assistant", "content": nil, "refusal": refusal}}
	})
	for i, r := range rows {
		if d := r.Verdicts[1].Detail; !utf8.ValidString(d) || !strings.Contains(d, "the teacher refused: xxx") {
			t.Fatalf("row %d: detail %q", i, d)
		}
	}
}

// closeCounter calls onClose when a response body is closed: the teacher
// has read that reply whole.
type closeCounter struct {
	http.RoundTripper
	onClose func()
}

type countedBody struct {
	io.ReadCloser
	onClose func()
}

func (b countedBody) Close() error { b.onClose(); return b.ReadCloser.Close() }

func (c closeCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.RoundTripper.RoundTrip(r)
	if err == nil {
		resp.Body = countedBody{resp.Body, c.onClose}
	}
	return resp, err
}

// Ctrl-C in the middle of a batch keeps the replies that came back (in
// the parts folder): the rerun asks only for the rest (it used to pay for
// the whole batch again), and the rows hold the replies kept.
func TestGenerateChainsInterruptedKeepsFinishedReplies(t *testing.T) {
	dir := t.TempDir()
	examples, exs := chainExamples(t, dir)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user := readChat(t, r).Messages[0].Content
		for _, e := range exs {
			if strings.Contains(user, e.Input) {
				if e.ID == exs[5].ID {
					<-r.Context().Done() // the slow one: still writing when the user stops the run
					return
				}
				chatReply(w, e.Chain)
				return
			}
		}
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.Concurrency = 8 })
	var read atomic.Int32
	teacher.client.Transport = closeCounter{http.DefaultTransport, func() {
		if read.Add(1) == 7 {
			cancel() // Ctrl-C once every other reply is in
		}
	}}
	out := filepath.Join(dir, "chains.arrow")
	cfg := chainsConfig(examples, out, teacher)
	cfg.Batch = 8
	if _, err := GenerateChains(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v", err)
	}
	var hits atomic.Int32
	again := fakeChatServer(t, exs, teacherScript(exs), nil, &hits)
	defer again.Close()
	cfg = chainsConfig(examples, out, testTeacher(t, again.URL, nil))
	cfg.Batch = 8
	st, err := GenerateChains(context.Background(), cfg)
	if err != nil || hits.Load() != 1 || st.Done != 8 || st.Rows != 8 {
		t.Fatalf("rerun: %+v, %v after %d requests; want the one unfinished example asked for", st, err, hits.Load())
	}
	rows, err := datasets.ReadChains(out, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range rows {
		if want := map[bool]string{true: teacherScript(exs)[5], false: exs[i].Chain}[i == 5]; r.ID != exs[i].ID || r.Chain != want {
			t.Errorf("row %d (%s): chain %q, want %q", i, r.ID, r.Chain, want)
		}
	}
}

// OpenAI's reasoning models (o1, o3, o4-mini, gpt-5) refuse max_tokens and
// ask for max_completion_tokens: the teacher sends the same budget under
// that name, from then on, instead of failing the run (teacher.max_tokens
// is required, so such a model could not be a teacher at all).
func TestOpenAITeacherSwitchesToMaxCompletionTokens(t *testing.T) {
	var hits, refused atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var req map[string]any
		json.NewDecoder(r.Body).Decode(&req)
		if _, ok := req["max_tokens"]; ok {
			refused.Add(1)
			http.Error(w, `{"error":{"message":"Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.","type":"invalid_request_error","param":"max_tokens","code":"unsupported_parameter"}}`, http.StatusBadRequest)
			return
		}
		if req["max_completion_tokens"] != 77.0 {
			t.Errorf("request %v: want max_completion_tokens 77", req)
		}
		chatReply(w, "ok")
	}))
	defer srv.Close()
	teacher := testTeacher(t, srv.URL, func(c *OpenAIConfig) { c.MaxTokens, c.MaxRetries, c.Concurrency = 77, -1, 1 })
	got, err := teacher.Complete(context.Background(), [][]datasets.Message{{{Role: "user", Content: "a"}}, {{Role: "user", Content: "b"}}, {{Role: "user", Content: "c"}}})
	if err != nil || len(got) != 3 || got[2].Text != "ok" || refused.Load() != 1 || hits.Load() != 4 {
		t.Fatalf("%+v, %v after %d requests (%d refused); want one refusal, then every request with max_completion_tokens", got, err, hits.Load(), refused.Load())
	}
}

// Their other refusal, of a temperature other than 1, names the setting.
func TestOpenAITeacherTemperatureHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"error":{"message":"Unsupported value: 'temperature' does not support 0.7 with this model. Only the default (1) value is supported.","type":"invalid_request_error","param":"temperature","code":"unsupported_value"}}`, http.StatusBadRequest)
	}))
	defer srv.Close()
	_, err := testTeacher(t, srv.URL, nil).Complete(context.Background(), onePrompt("x"))
	if err == nil || !strings.Contains(err.Error(), "set teacher.temperature: 1 in the run config, or --temperature 1") {
		t.Fatalf("error %v: want the setting named", err)
	}
}
