package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/tokenize"
)

// greedyChat is what `tagpr model generate --chat` prints for one user
// message: the reference the server's greedy answers must equal.
func greedyChat(t testing.TB, m *Model, user string, maxTokens int, stops []string) TextCompletion {
	t.Helper()
	ids, _, err := m.EncodeChat([]tokenize.Message{{Role: "user", Content: user}})
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := m.Generate(context.Background(), [][]int64{ids}, lm.GenerateOptions{MaxNewTokens: maxTokens, StopStrings: stops, NoLogProbs: true})
	if err != nil {
		t.Fatal(err)
	}
	return c[0]
}

func chatBody(m *Model, user string, extra map[string]any) map[string]any {
	b := map[string]any{"model": m.Name, "messages": []map[string]any{{"role": "user", "content": user}}, "temperature": 0}
	for k, v := range extra {
		b[k] = v
	}
	return b
}

// Chat and text completions answer with the OpenAI shapes, and their
// greedy text is `model generate`'s.
func TestChatAndCompletions(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	want := greedyChat(t, m, "Name a colour.", 12, nil)

	code, res := post(t, ts.base+"/v1/chat/completions", chatBody(m, "Name a colour.", map[string]any{"max_tokens": 12}))
	if code != 200 {
		t.Fatalf("chat: %d %v", code, res)
	}
	if str(res["object"]) != "chat.completion" || !strings.HasPrefix(str(res["id"]), "chatcmpl-") || str(res["model"]) != m.Name {
		t.Errorf("chat response head: %v", res)
	}
	if got := str(field(res, "choices", 0, "message", "content")); got != want.Text {
		t.Errorf("chat content %q, model generate %q", got, want.Text)
	}
	if r := str(field(res, "choices", 0, "message", "role")); r != "assistant" {
		t.Errorf("role %q", r)
	}
	wantFinish := map[lm.FinishReason]string{lm.FinishEOS: "stop", lm.FinishLength: "length"}[want.Finish]
	if f := str(field(res, "choices", 0, "finish_reason")); f != wantFinish {
		t.Errorf("finish_reason %q, want %q (generate: %s)", f, wantFinish, want.Finish)
	}
	ids, _, _ := m.EncodeChat([]tokenize.Message{{Role: "user", Content: "Name a colour."}})
	if u := field(res, "usage"); intOf(field(u, "prompt_tokens")) != len(ids) || intOf(field(u, "completion_tokens")) != len(want.Tokens) ||
		intOf(field(u, "total_tokens")) != len(ids)+len(want.Tokens) {
		t.Errorf("usage %v; want prompt %d, completion %d", u, len(ids), len(want.Tokens))
	}

	// Text completions: a string prompt and the same prompt as token ids.
	prompt := "The capital of France is"
	pids := m.EncodeText(prompt)
	ref, _, err := m.Generate(context.Background(), [][]int64{pids}, lm.GenerateOptions{MaxNewTokens: 10, NoLogProbs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []any{prompt, pids, []any{prompt, prompt}} {
		code, res := post(t, ts.base+"/v1/completions", map[string]any{"model": m.Name, "prompt": p, "max_tokens": 10, "temperature": 0})
		if code != 200 || str(res["object"]) != "text_completion" {
			t.Fatalf("completion of %v: %d %v", p, code, res)
		}
		choices, _ := res["choices"].([]any)
		if _, two := p.([]any); two && len(choices) != 2 || !two && len(choices) != 1 {
			t.Fatalf("completion of %v: %d choices", p, len(choices))
		}
		for i := range choices {
			if got := str(field(res, "choices", i, "text")); got != ref[0].Text || intOf(field(res, "choices", i, "index")) != i {
				t.Errorf("completion %d of %v: %q, generate %q", i, p, got, ref[0].Text)
			}
		}
	}

	// /v1/models lists the model.
	resp, err := http.Get(ts.base + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	var list map[string]any
	json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if str(field(list, "data", 0, "id")) != m.Name || intOf(field(list, "data", 0, "max_model_len")) != 4096 {
		t.Errorf("/v1/models: %v", list)
	}
}

// SSE streams one chunk per token (with log-probs asked for, every token
// has its chunk), the chunks add up to the whole answer, and a client that
// leaves mid-stream stops its generation.
func TestStreamingTokenByToken(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	body := func() map[string]any {
		return chatBody(m, "Tell me a story.", map[string]any{"max_tokens": 20, "ignore_eos": true, "logprobs": true, "top_logprobs": 2})
	}
	_, whole := post(t, ts.base+"/v1/chat/completions", body())
	evs := postStream(t, ts.base+"/v1/chat/completions", body())
	var text strings.Builder
	tokens, finishes := 0, 0
	for i, ev := range evs {
		if str(ev["object"]) != "chat.completion.chunk" {
			t.Fatalf("event %d: %v", i, ev)
		}
		if i == 0 && str(field(ev, "choices", 0, "delta", "role")) != "assistant" {
			t.Errorf("first chunk does not carry the role: %v", ev)
		}
		text.WriteString(str(field(ev, "choices", 0, "delta", "content")))
		lp, _ := field(ev, "choices", 0, "logprobs", "content").([]any)
		if len(lp) > 1 {
			t.Errorf("chunk %d carries %d tokens, want one", i, len(lp))
		}
		tokens += len(lp)
		if f := str(field(ev, "choices", 0, "finish_reason")); f != "" {
			finishes++
			if f != "length" || i != len(evs)-1 {
				t.Errorf("finish %q at chunk %d of %d", f, i, len(evs))
			}
		}
	}
	if tokens != 20 || finishes != 1 {
		t.Errorf("%d token chunks and %d finishes; want 20 and 1", tokens, finishes)
	}
	if want := str(field(whole, "choices", 0, "message", "content")); text.String() != want {
		t.Errorf("streamed %q, whole %q", text.String(), want)
	}
	wholeLP, _ := field(whole, "choices", 0, "logprobs", "content").([]any)
	if len(wholeLP) != 20 || len(field(wholeLP[0], "top_logprobs").([]any)) != 2 {
		t.Errorf("whole answer log-probs: %v", wholeLP)
	}
	for i, e := range wholeLP {
		tok, raw := str(field(e, "token")), field(e, "bytes").([]any)
		if utf8.ValidString(tok) && len(raw) != len(tok) {
			t.Errorf("log-prob %d: token %q with %d bytes", i, tok, len(raw))
		}
		if top := str(field(e, "top_logprobs", 0, "token")); top != tok {
			t.Errorf("log-prob %d: greedy token %q is not its top alternative %q", i, tok, top)
		}
	}

	// A client that reads one chunk and leaves: its rows leave the batch.
	before := ts.b.Stats()
	b, _ := json.Marshal(chatBody(m, "Go on forever.", map[string]any{"max_tokens": 3000, "ignore_eos": true, "stream": true}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.base+"/v1/chat/completions", bytes.NewReader(b))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	rd := bufio.NewReader(resp.Body)
	for n := 0; n < 2; { // the role chunk, then a token
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(line, "data: ") {
			n++
		}
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(30 * time.Second)
	for ts.b.Stats().Failed == before.Failed && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	st := ts.b.Stats()
	if st.Failed != before.Failed+1 || st.Generated-before.Generated >= 3000 || st.Rows != 0 {
		t.Errorf("after the client left: %d failed (was %d), %d tokens generated, %d rows", st.Failed, before.Failed, st.Generated-before.Generated, st.Rows)
	}
}

// n > 1: sampled choices are reproducible for a seed, equal Generate's
// samples for that seed, and stream interleaved by index.
func TestN(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	body := func() map[string]any {
		return chatBody(m, "Pick a number.", map[string]any{"n": 3, "temperature": 1, "seed": 7, "max_tokens": 8})
	}
	_, a := post(t, ts.base+"/v1/chat/completions", body())
	_, b := post(t, ts.base+"/v1/chat/completions", body())
	ids, _, _ := m.EncodeChat([]tokenize.Message{{Role: "user", Content: "Pick a number."}})
	ref, _, err := m.Generate(context.Background(), [][]int64{ids}, lm.GenerateOptions{MaxNewTokens: 8, NumGenerations: 3,
		Sampling: lm.Sampling{Temperature: 1}, Seed: 7, NoLogProbs: true})
	if err != nil {
		t.Fatal(err)
	}
	distinct := map[string]bool{}
	for i := 0; i < 3; i++ {
		ta, tb := str(field(a, "choices", i, "message", "content")), str(field(b, "choices", i, "message", "content"))
		if ta != tb || ta != ref[i].Text || intOf(field(a, "choices", i, "index")) != i {
			t.Errorf("choice %d: %q then %q with the same seed; Generate %q", i, ta, tb, ref[i].Text)
		}
		distinct[ta] = true
	}
	if len(distinct) < 2 {
		t.Errorf("3 samples at temperature 1 are all %v", distinct)
	}
	evs := postStream(t, ts.base+"/v1/chat/completions", body())
	texts := make([]string, 3)
	for _, ev := range evs {
		i := intOf(field(ev, "choices", 0, "index"))
		texts[i] += str(field(ev, "choices", 0, "delta", "content"))
	}
	for i := range texts {
		if texts[i] != ref[i].Text {
			t.Errorf("streamed choice %d %q, want %q", i, texts[i], ref[i].Text)
		}
	}
}

// A stop string cuts the answer before it (streamed or whole), and the
// finish reason says so.
func TestStopStrings(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	full := greedyChat(t, m, "Say something long.", 24, nil).Text
	// A stop string from the middle of the answer, on character bounds.
	runes := []rune(full)
	if len(runes) < 12 {
		t.Fatalf("answer %q too short for the test", full)
	}
	stop := string(runes[len(runes)/2 : len(runes)/2+3])
	cut := strings.Index(full, stop)
	want := full[:cut]
	if ref := greedyChat(t, m, "Say something long.", 24, []string{stop}); ref.Text != want || ref.Finish != lm.FinishStop {
		t.Fatalf("model generate with stop %q: %q (%s), want %q", stop, ref.Text, ref.Finish, want)
	}
	body := func() map[string]any {
		return chatBody(m, "Say something long.", map[string]any{"max_tokens": 24, "stop": []string{"never appears here", stop}})
	}
	_, res := post(t, ts.base+"/v1/chat/completions", body())
	if got := str(field(res, "choices", 0, "message", "content")); got != want ||
		str(field(res, "choices", 0, "finish_reason")) != "stop" || str(field(res, "choices", 0, "stop_reason")) != stop {
		t.Errorf("stop %q: %q (%v), want %q", stop, got, field(res, "choices", 0), want)
	}
	var streamed strings.Builder
	for _, ev := range postStream(t, ts.base+"/v1/chat/completions", body()) {
		streamed.WriteString(str(field(ev, "choices", 0, "delta", "content")))
	}
	if streamed.String() != want {
		t.Errorf("streamed with stop %q: %q, want %q", stop, streamed.String(), want)
	}
	// The text-completions endpoint takes a single string too.
	_, res = post(t, ts.base+"/v1/completions", map[string]any{"model": m.Name, "prompt": "Once upon a time", "max_tokens": 16, "temperature": 0, "stop": "zzzz"})
	if f := str(field(res, "choices", 0, "finish_reason")); f == "" {
		t.Errorf("completion with a stop string: %v", res)
	}
}

// 16 concurrent clients are all answered, share decode steps, and each
// greedy answer equals `model generate`'s for that prompt alone.
func TestSixteenConcurrentClients(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{Batcher: lm.BatcherOptions{MaxRows: 16}})
	const clients = 16
	users := make([]string, clients)
	for i := range users {
		users[i] = strings.Repeat("tell me about topic ", 1+i%5) + string(rune('A'+i))
	}
	got := make([]string, clients)
	codes := make([]int, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := chatBody(m, users[i], map[string]any{"max_tokens": 8 + i})
			if i%2 == 1 {
				var sb strings.Builder
				for _, ev := range postStream(t, ts.base+"/v1/chat/completions", body) {
					sb.WriteString(str(field(ev, "choices", 0, "delta", "content")))
				}
				got[i], codes[i] = sb.String(), 200
				return
			}
			var res map[string]any
			codes[i], res = post(t, ts.base+"/v1/chat/completions", body)
			got[i] = str(field(res, "choices", 0, "message", "content"))
		}()
	}
	wg.Wait()
	for i := 0; i < clients; i++ {
		want := greedyChat(t, m, users[i], 8+i, nil).Text
		if codes[i] != 200 || got[i] != want {
			t.Errorf("client %d: %d %q; model generate %q", i, codes[i], got[i], want)
		}
	}
	st := ts.b.Stats()
	if st.Finished < clients || float64(st.RowSteps)/float64(st.DecodeSteps) < 2 {
		t.Errorf("%d finished, mean batch %d/%d: the clients were not batched together", st.Finished, st.RowSteps, st.DecodeSteps)
	}
}

// The scripted model thinks then answers: with separate_reasoning (or the
// server's --reasoning-parser) the <think> part is reasoning_content, in
// whole answers and streams alike; without, it stays in content.
func TestReasoningContent(t *testing.T) {
	m := openModel(t, scriptedDir)
	ts := startServer(t, m, Options{})
	_, res := post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", nil))
	if got := str(field(res, "choices", 0, "message", "content")); got != scriptText ||
		field(res, "choices", 0, "message", "reasoning_content") != nil || str(field(res, "choices", 0, "finish_reason")) != "stop" {
		t.Fatalf("without a reasoning split: %v, want content %q", field(res, "choices", 0), scriptText)
	}
	split := chatBody(m, "hi", map[string]any{"separate_reasoning": true, "temperature": 0.7})
	_, res = post(t, ts.base+"/v1/chat/completions", split)
	if c, r := str(field(res, "choices", 0, "message", "content")), str(field(res, "choices", 0, "message", "reasoning_content")); c != "Hello there." || r != "Let me think" {
		t.Errorf("split: content %q, reasoning %q", c, r)
	}
	var content, reasoning strings.Builder
	order := ""
	for _, ev := range postStream(t, ts.base+"/v1/chat/completions", split) {
		if s := str(field(ev, "choices", 0, "delta", "reasoning_content")); s != "" {
			reasoning.WriteString(s)
			order += "r"
		}
		if s := str(field(ev, "choices", 0, "delta", "content")); s != "" {
			content.WriteString(s)
			order += "c"
		}
	}
	if content.String() != "Hello there." || reasoning.String() != "Let me think" || strings.Contains(order, "cr") {
		t.Errorf("streamed split: content %q, reasoning %q, order %s", content.String(), reasoning.String(), order)
	}
	// The server-wide default, and a request opting out.
	ts2 := startServer(t, m, Options{Reasoning: true})
	_, res = post(t, ts2.base+"/v1/chat/completions", chatBody(m, "hi", nil))
	if r := str(field(res, "choices", 0, "message", "reasoning_content")); r != "Let me think" {
		t.Errorf("--reasoning-parser default: %v", field(res, "choices", 0))
	}
	_, res = post(t, ts2.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"separate_reasoning": false}))
	if c := str(field(res, "choices", 0, "message", "content")); c != scriptText {
		t.Errorf("opting out: %q", c)
	}
}

// chat_template_kwargs {"enable_thinking": false} prompts as
// apply_chat_template(enable_thinking=False) does with Qwen3's template (an
// empty think block closed after the generation prompt), and the answer is
// `model generate --enable-thinking=false`'s; a key tagpr does not render
// is refused by name rather than dropped.
func TestEnableThinking(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	msgs := []tokenize.Message{{Role: "user", Content: "Name a colour."}}
	ids, text, err := m.EncodeChatWith(msgs, tokenize.ChatOptions{AddGenerationPrompt: true, DisableThinking: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(text, "<|im_start|>assistant\n<think>\n\n</think>\n\n") {
		t.Fatalf("enable_thinking=False prompt %q", text)
	}
	want, _, err := m.Generate(context.Background(), [][]int64{ids}, lm.GenerateOptions{MaxNewTokens: 8, NoLogProbs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, kw := range []map[string]any{{"enable_thinking": false}, {"enable_thinking": true}, {"enable_thinking": nil}} {
		code, res := post(t, ts.base+"/v1/chat/completions", chatBody(m, "Name a colour.", map[string]any{"max_tokens": 8, "chat_template_kwargs": kw}))
		if code != 200 {
			t.Fatalf("%v: %d %v", kw, code, res)
		}
		wantLen, _, _ := m.EncodeChat(msgs)
		if kw["enable_thinking"] == false {
			wantLen = ids
			if got := str(field(res, "choices", 0, "message", "content")); got != want[0].Text {
				t.Errorf("enable_thinking false: %q, generate %q", got, want[0].Text)
			}
		}
		if got := intOf(field(res, "usage", "prompt_tokens")); got != len(wantLen) {
			t.Errorf("%v: prompt_tokens %d, want %d", kw, got, len(wantLen))
		}
	}
	code, res := post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"chat_template_kwargs": map[string]any{"tools_in_user_message": true}}))
	checkError(t, "an unsupported chat_template_kwargs key", code, res, 400, "tools_in_user_message")
	if p := str(field(res, "error", "param")); p != "chat_template_kwargs.tools_in_user_message" {
		t.Errorf("param %q", p)
	}
	code, res = post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"chat_template_kwargs": map[string]any{"enable_thinking": "no"}}))
	checkError(t, "enable_thinking not a bool", code, res, 400, "want true or false")
}

// checkError asserts the OpenAI error shape and status.
func checkError(t *testing.T, what string, code int, body map[string]any, wantCode int, wantIn string) {
	t.Helper()
	e, ok := body["error"].(map[string]any)
	if code != wantCode || !ok {
		t.Errorf("%s: status %d body %v; want %d with an error object", what, code, body, wantCode)
		return
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := e[k]; !ok {
			t.Errorf("%s: error lacks %q: %v", what, k, e)
		}
	}
	if !strings.Contains(str(e["message"]), wantIn) {
		t.Errorf("%s: message %q lacks %q", what, e["message"], wantIn)
	}
}

func rawPost(t *testing.T, url string, body []byte) (int, http.Header, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	raw, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: %d, not JSON: %s", url, resp.StatusCode, raw)
	}
	return resp.StatusCode, resp.Header, out
}

// Every limit is refused with the OpenAI error shape and its status.
func TestLimitsRefused(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{MaxBodyBytes: 64 << 10, MaxConcurrent: 1, Batcher: lm.BatcherOptions{MaxRows: 4}})
	chat := ts.base + "/v1/chat/completions"

	code, _, body := rawPost(t, chat, []byte(`{"model":"x","messages":[{"role":"user","content":"`+strings.Repeat("a", 70000)+`"}]}`))
	checkError(t, "body over 64 KiB", code, body, 413, "larger than 65536 bytes")
	code, body = post(t, chat, chatBody(m, strings.Repeat("word ", 5000), nil))
	checkError(t, "prompt over the context", code, body, 400, "maximum context length is 4096")
	if str(field(body, "error", "code")) != "context_length_exceeded" {
		t.Errorf("long prompt code: %v", body)
	}
	code, body = post(t, chat, chatBody(m, "hi", map[string]any{"max_tokens": 5000}))
	checkError(t, "max_tokens over the context", code, body, 400, "max_tokens asks for 5000")
	for _, c := range []struct {
		body map[string]any
		code int
		want string
	}{
		{chatBody(m, "hi", map[string]any{"model": "gpt-9"}), 404, `the model "gpt-9" does not exist`},
		{chatBody(m, "hi", map[string]any{"temperature": 3}), 400, "temperature is 3"},
		// 1/temperature overflows the float32 logits: a 500 blaming the weights before.
		{chatBody(m, "hi", map[string]any{"temperature": 1e-39}), 400, "temperature is 1e-39"},
		{chatBody(m, "hi", map[string]any{"n": 5}), 400, "n is 5"},
		{chatBody(m, "hi", map[string]any{"top_p": 0}), 400, "top_p is 0"},
		{chatBody(m, "hi", map[string]any{"max_tokens": 0}), 400, "max_tokens is 0"},
		{chatBody(m, "hi", map[string]any{"frobnicate": 1}), 400, "unrecognized request argument supplied: frobnicate"},
		{chatBody(m, "hi", map[string]any{"tools": []any{map[string]any{"type": "function"}}}), 400, "tool calling"},
		{chatBody(m, "hi", map[string]any{"presence_penalty": 2.5}), 400, "presence_penalty is 2.5"},
		{chatBody(m, "hi", map[string]any{"frequency_penalty": -3}), 400, "frequency_penalty is -3"},
		{chatBody(m, "hi", map[string]any{"repetition_penalty": 0}), 400, "repetition_penalty is 0"},
		{chatBody(m, "hi", map[string]any{"top_logprobs": 3}), 400, "needs logprobs"},
		{map[string]any{"model": m.Name, "messages": []any{map[string]any{"role": "tool", "content": "x"}}}, 400, `role "tool"`},
		{map[string]any{"model": m.Name, "messages": []any{}}, 400, "messages is empty"},
	} {
		code, body := post(t, chat, c.body)
		checkError(t, c.want, code, body, c.code, c.want)
	}
	code, body = post(t, ts.base+"/v1/completions", map[string]any{"model": m.Name, "prompt": []string{"hi", strings.Repeat("word ", 5000)}})
	checkError(t, "second prompt over the context", code, body, 400, "prompt 1 has")
	if got, _ := field(body, "error", "param").(string); got != "prompt" {
		t.Errorf("a text completion's prompt over the context: param %q, want prompt", got)
	}
	code, body = post(t, ts.base+"/v1/completions", map[string]any{"model": m.Name, "prompt": []int{1, 999999}})
	checkError(t, "token id outside the vocab", code, body, 400, "outside the vocabulary")
	resp, err := http.Get(chat)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	checkError(t, "GET on a POST route", resp.StatusCode, got, 405, "use POST")
	code, body = post(t, ts.base+"/v1/embeddings", map[string]any{"model": m.Name})
	checkError(t, "an unknown route", code, body, 404, "no route /v1/embeddings")

	// One request in flight (a long stream): the next gets 429.
	b, _ := json.Marshal(chatBody(m, "Go on.", map[string]any{"max_tokens": 4000, "ignore_eos": true, "stream": true}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", chat, bytes.NewReader(b))
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	code, hdr, body := rawPost(t, chat, mustJSON(chatBody(m, "hi", map[string]any{"max_tokens": 2})))
	checkError(t, "second concurrent request", code, body, 429, "--max-concurrent")
	if hdr.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	cancel()
	resp.Body.Close()

	// Past --request-timeout: a stream ends with an error event, a whole
	// answer gets 504.
	slow := startServer(t, m, Options{RequestTimeout: 300 * time.Millisecond})
	long := chatBody(m, "Go on.", map[string]any{"max_tokens": 4000, "ignore_eos": true})
	evs := postStream(t, slow.base+"/v1/chat/completions", long)
	if last := evs[len(evs)-1]; str(field(last, "error", "code")) != "timeout" {
		t.Errorf("a stream past --request-timeout ends with %v, want a timeout error event", last)
	}
	delete(long, "stream")
	code, body = post(t, slow.base+"/v1/chat/completions", long)
	checkError(t, "request past the timeout", code, body, 504, "longer than 300ms")

	// While shutting down: 503, and /health says so.
	ts.draining.Store(true)
	code, _, body = rawPost(t, chat, mustJSON(chatBody(m, "hi", nil)))
	checkError(t, "request while draining", code, body, 503, "shutting down")
	resp, err = http.Get(ts.base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 {
		t.Errorf("/health while draining: %d", resp.StatusCode)
	}
	ts.draining.Store(false)
}

// A request whose rows cannot fit the KV cache is refused naming the
// request's own parameters and --kv-cache-mb, not the batcher's terms.
func TestCacheBudgetRefused(t *testing.T) {
	m := openModel(t, randomDir)
	l := m.LM.Layout
	perPos := int64(2*2*l.Layers*l.KVHeads*l.HeadDim) * 4
	ts := startServer(t, m, Options{Batcher: lm.BatcherOptions{CacheBytes: 600 * perPos, MaxRows: 8}})
	code, body := post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"max_tokens": 100, "n": 8}))
	checkError(t, "n 8 × 100 tokens past the cache", code, body, 400, "--kv-cache-mb")
	if msg := str(field(body, "error", "message")); strings.Contains(msg, "max_new_tokens") || strings.Contains(msg, "model.onnx") {
		t.Errorf("the refusal speaks the batcher's terms: %q", msg)
	}
	if got, _ := field(body, "error", "param").(string); got != "n" {
		t.Errorf("param %q, want n", got)
	}
	code, body = post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"max_tokens": 40, "n": 8}))
	if code != 200 {
		t.Errorf("n 8 × 40 tokens within the cache: %d %v", code, body)
	}
}

// A wrongly typed value is named as the client wrote it (no Go struct or
// type names) and param says which one.
func TestWrongTypesNamed(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	chat := ts.base + "/v1/chat/completions"
	for _, c := range []struct {
		body, param, want string
	}{
		{`{"model":"M","messages":[{"role":"user","content":"hi"}],"max_tokens":"5"}`, "max_tokens", "max_tokens: want an integer, got a JSON string"},
		{`{"model":"M","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}`, "temperature", "temperature: want a number, got a JSON string"},
		{`{"model":"M","messages":[{"role":"user","content":"hi"}],"seed":18446744073709551616}`, "seed", "seed: want an integer that fits in 64 bits"},
		{`{"model":"M","messages":[{"role":"user","content":"hi"}],"stop":5}`, "stop", "stop: want a string or a list of strings, got a JSON number 5"},
		{`{"model":"M","messages":"hi"}`, "messages", "messages: want a list, got a JSON string"},
		{`[1, 2]`, "", "the body must be a JSON object"},
	} {
		code, _, body := rawPost(t, chat, []byte(strings.ReplaceAll(c.body, `"M"`, strconv.Quote(m.Name))))
		checkError(t, c.body, code, body, 400, c.want)
		if got, _ := field(body, "error", "param").(string); got != c.param {
			t.Errorf("%s: param %q, want %q", c.body, got, c.param)
		}
		if msg := str(field(body, "error", "message")); strings.Contains(msg, "samplingParams") || strings.Contains(msg, "serve.") {
			t.Errorf("%s: message names Go types: %q", c.body, msg)
		}
	}
}

// A system or user message with content null (or none) is refused naming
// messages[i].content, as OpenAI does, not taken as empty; an assistant turn
// may leave it out, and one with tool_calls is refused by name.
func TestNullContentRefused(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	chat := ts.base + "/v1/chat/completions"
	body := func(msgs ...map[string]any) map[string]any {
		return map[string]any{"model": m.Name, "messages": msgs, "max_tokens": 2, "temperature": 0}
	}
	user := map[string]any{"role": "user", "content": "hi"}
	for _, c := range []struct {
		what  string
		body  map[string]any
		param string
	}{
		{"user content null", body(map[string]any{"role": "user", "content": nil}), "messages[0].content"},
		{"user content missing", body(map[string]any{"role": "user"}), "messages[0].content"},
		{"system content null", body(map[string]any{"role": "system", "content": nil}, user), "messages[0].content"},
		{"developer content null", body(map[string]any{"role": "developer", "content": nil}, user), "messages[0].content"},
		{"assistant tool_calls", body(user, map[string]any{"role": "assistant", "content": nil,
			"tool_calls": []any{map[string]any{"id": "c1", "type": "function", "function": map[string]any{"name": "f", "arguments": "{}"}}}}, user), "messages[1].tool_calls"},
	} {
		code, body := post(t, chat, c.body)
		want := "has no content"
		if strings.HasSuffix(c.param, "tool_calls") {
			want = "tool calling is not supported"
		}
		checkError(t, c.what, code, body, 400, want)
		if got, _ := field(body, "error", "param").(string); got != c.param {
			t.Errorf("%s: param %q, want %q", c.what, got, c.param)
		}
	}
	// An assistant turn without content is history OpenAI accepts.
	if code, res := post(t, chat, body(user, map[string]any{"role": "assistant", "content": nil}, user)); code != 200 {
		t.Errorf("assistant content null: %d %v", code, res)
	}
}

// A client that trickles its body holds no concurrency slot while it does
// (the body is read before the slot is taken), and past BodyTimeout it gets
// 408 and its connection closed.
func TestSlowBodyHoldsNoSlot(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{MaxConcurrent: 1, BodyTimeout: 500 * time.Millisecond})
	conn, err := net.Dial("tcp", strings.TrimPrefix(ts.base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := mustJSON(chatBody(m, "hi", map[string]any{"max_tokens": 2}))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body[:10])
	time.Sleep(100 * time.Millisecond) // the server is reading the body
	if code, res := post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"max_tokens": 2})); code != 200 {
		t.Errorf("a request beside a client still sending its body: %d %v (the slow client holds the only slot)", code, res)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("the slow client got no answer within 5 s of a 500 ms body timeout: %v", err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var got map[string]any
	json.Unmarshal(raw, &got)
	checkError(t, "a body slower than BodyTimeout", resp.StatusCode, got, 408, "did not arrive within 500ms")
	if !resp.Close {
		t.Error("408 leaves the connection open")
	}
}

// A client that stops reading a stream does not hold its slot past
// RequestTimeout: the answer's writes, blocked on the full connection, are
// given up on, and the slot is free for the next request.
func TestStalledReaderFreesItsSlot(t *testing.T) {
	m := openModel(t, randomDir)
	s, err := New(m, Options{MaxConcurrent: 1, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, smallSendBuffers{ln}, time.Second) }()
	defer func() { stop(); <-done }()
	// Small socket buffers on both ends (the client's set before it
	// connects, as they bound the window the connection opens with): the
	// server's writes block after a few tokens.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		return c.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	conn, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	body := mustJSON(chatBody(m, "hi", map[string]any{"max_tokens": 4000, "ignore_eos": true, "stream": true, "n": 8,
		"logprobs": true, "top_logprobs": 20}))
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	for s.Running() == 0 { // admitted
		time.Sleep(5 * time.Millisecond)
	}
	// The client reads nothing and stays connected.
	for end := time.Now().Add(40 * time.Second); s.Running() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("a client that stopped reading still holds the only slot 40 s into a %s request timeout", time.Second)
		}
	}
	if code, res := post(t, "http://"+ln.Addr().String()+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"max_tokens": 2})); code != 200 {
		t.Errorf("the next request: %d %v", code, res)
	}
}

// smallSendBuffers gives each connection it accepts a 4 KiB send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		c.(*net.TCPConn).SetWriteBuffer(4096)
	}
	return c, err
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// /health and /metrics: Prometheus text with the request, token, queue,
// batch and latency series.
func TestHealthAndMetrics(t *testing.T) {
	m := openModel(t, randomDir)
	ts := startServer(t, m, Options{})
	resp, err := http.Get(ts.base + "/health")
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	json.NewDecoder(resp.Body).Decode(&h)
	resp.Body.Close()
	if resp.StatusCode != 200 || h["status"] != "ok" {
		t.Fatalf("/health: %d %v", resp.StatusCode, h)
	}
	post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"max_tokens": 5, "ignore_eos": true}))
	post(t, ts.base+"/v1/chat/completions", chatBody(m, "hi", map[string]any{"model": "nope"}))
	resp, err = http.Get(ts.base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(raw)
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Errorf("metrics content type %q", resp.Header.Get("Content-Type"))
	}
	label := `model="` + m.Name + `"`
	for _, want := range []string{
		`tagpr_requests_total{` + label + `,endpoint="chat",code="200"} 1`,
		`tagpr_requests_total{` + label + `,endpoint="chat",code="404"} 1`,
		`tagpr_requests_total{` + label + `,endpoint="health",code="200"} 1`,
		`tagpr_generation_tokens_total{` + label + `} 5`,
		`tagpr_queue_requests{` + label + `} 0`,
		`tagpr_batch_rows{` + label + `} 0`,
		`tagpr_requests_in_flight{` + label + `} 0`,
		`tagpr_decode_steps_total{` + label + `} 4`,
		`tagpr_time_to_first_token_seconds_count{` + label + `} 1`,
		`tagpr_time_to_first_token_seconds_bucket{` + label + `,le="+Inf"} 1`,
		`tagpr_request_duration_seconds_count{` + label + `} 1`,
		`tagpr_queue_wait_seconds_count{` + label + `} 1`,
		"# TYPE tagpr_time_to_first_token_seconds histogram",
		"# TYPE tagpr_prompt_tokens_total counter",
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(text), "\n") {
		if !strings.HasPrefix(line, "#") && len(strings.Fields(line)) != 2 {
			t.Errorf("malformed sample line %q", line)
		}
	}
}

// SIGTERM's path: the running request finishes, then Serve returns nil;
// past the drain time, running requests are canceled instead.
func TestGracefulShutdown(t *testing.T) {
	m := openModel(t, randomDir)
	for _, drain := range []time.Duration{30 * time.Second, 200 * time.Millisecond} {
		s, err := New(m, Options{})
		if err != nil {
			t.Fatal(err)
		}
		ln, err := listen()
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Serve(ctx, ln, drain) }()
		base := "http://" + ln.Addr().String()
		max := 400 // long enough to still run while the test asks during the drain
		if drain < time.Second {
			max = 4000
		}
		b := mustJSON(chatBody(m, "Go on.", map[string]any{"max_tokens": max, "ignore_eos": true, "stream": true}))
		resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		rd := bufio.NewReader(resp.Body)
		if _, err := rd.ReadString('\n'); err != nil { // the stream has started
			t.Fatal(err)
		}
		stop()
		if drain > time.Second {
			// While it drains, the server still answers: new requests 503,
			// /health 503 (a load balancer's cue), not a refused connection.
			var health *http.Response
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
				if health, err = http.Get(base + "/health"); err != nil {
					t.Fatalf("drain %s: /health while draining: %v", drain, err)
				}
				health.Body.Close()
				if health.StatusCode == 503 {
					break
				}
			}
			if health.StatusCode != 503 {
				t.Errorf("drain %s: /health while draining: %d, want 503", drain, health.StatusCode)
			}
			code, _, body := rawPost(t, base+"/v1/chat/completions", mustJSON(chatBody(m, "hi", map[string]any{"max_tokens": 2})))
			checkError(t, "a request while draining", code, body, 503, "shutting down")
		}
		evs := sseEvents(t, rd)
		resp.Body.Close()
		last := evs[len(evs)-1]
		if drain > time.Second {
			if str(field(last, "choices", 0, "finish_reason")) != "length" {
				t.Errorf("drain %s: the running request did not finish: last event %v", drain, last)
			}
		} else if str(field(last, "error", "code")) != "shutting_down" {
			t.Errorf("drain %s: the running request was not canceled: last event %v", drain, last)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("drain %s: Serve returned %v, want nil", drain, err)
			}
		case <-time.After(time.Minute):
			t.Fatalf("drain %s: Serve did not return", drain)
		}
	}
}

// An assistant turn's reasoning_content reaches a template that reads it
// (Qwen3's) as a think block before its content; the others drop it, as
// transformers' Qwen2.5 and Llama templates do.
func TestHistoryReasoningContent(t *testing.T) {
	in := []chatMessageIn{{Role: "user", Content: json.RawMessage(`"q"`)},
		{Role: "assistant", Content: json.RawMessage(`"C"`), ReasoningContent: "R"}}
	for _, reads := range []bool{true, false} {
		msgs, e := chatMessages(in, reads)
		if e != nil {
			t.Fatal(e)
		}
		want := "C"
		if reads {
			want = "<think>\nR\n</think>\n\nC"
		}
		if got := msgs[1].Content; got != want {
			t.Errorf("template reads reasoning_content %v: assistant content %q, want %q", reads, got, want)
		}
	}
	// Qwen3's template keeps the reasoning of an answer after the last user turn.
	m := openModel(t, randomDir)
	msgs, e := chatMessages(in, m.Tok.ChatFormat().AssistantBody != nil)
	if e != nil {
		t.Fatal(e)
	}
	_, text, err := m.EncodeChat(msgs)
	if err != nil || !strings.Contains(text, "<|im_start|>assistant\n<think>\nR\n</think>\n\nC<|im_end|>") {
		t.Errorf("Qwen3 prompt %q (%v) lacks the answer's reasoning", text, err)
	}
}

// What limits a request's context is named: the server's start line said
// "max context N tokens" with N the KV cache budget's positions, not the
// model's, and --max-model-len past that budget blamed max_position_embeddings.
func TestContextLimitNamesWhatSetsIt(t *testing.T) {
	m := openModel(t, randomDir)
	positions := modelPositions(m)
	if positions < 64 {
		t.Fatalf("the fixture model has %d positions; the test wants 64 or more", positions)
	}
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{}, "max_position_embeddings"},
		{Options{MaxModelLen: 16}, "--max-model-len"},
	} {
		s, err := New(m, c.o)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.ContextLimit(); got != c.want {
			t.Errorf("%+v: context limit set by %q, want %q", c.o, got, c.want)
		}
		s.Close()
	}
	// A cache of a few positions (one row's KV for 32 of them).
	l := m.LM.Layout
	small := int64(32 * 2 * l.Layers * l.KVHeads * l.HeadDim * 4)
	s, err := New(m, Options{Batcher: lm.BatcherOptions{CacheBytes: small}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.ContextLimit(); got != "--kv-cache-mb" || s.MaxModelLen() >= positions {
		t.Errorf("a small cache: max context %d set by %q; want fewer than %d, by --kv-cache-mb", s.MaxModelLen(), got, positions)
	}
	s.Close()
	if _, err := New(m, Options{MaxModelLen: positions, Batcher: lm.BatcherOptions{CacheBytes: small}}); !errors.Is(err, ErrMaxModelLen) || !strings.Contains(err.Error(), "raise --kv-cache-mb") {
		t.Errorf("--max-model-len past the cache: %v; want a refusal naming --kv-cache-mb", err)
	}
}
