package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
)

// qwenModelDir is a one-layer built-in model with the Qwen3 vocabulary;
// the commands take the pinned tokenizer by its models.lock name.
func qwenModelDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "qwen-tiny")
	if _, stderr, err := runTagpr(t, ".", nil, "model", "init", "--arch", "llama", "--layers", "1", "--d-model", "32", "--heads", "2",
		"--kv-heads", "1", "--vocab", "151669", "--eos-token-id", "151643", "--seed", "3", "--init-std", "0.05", "--out", dir); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	return dir
}

// `model generate --chat` prints text; `tagpr serve` answers the same chat
// with the same greedy text, and exits 0 on SIGTERM.
func TestServeMatchesModelGenerate(t *testing.T) {
	dir := qwenModelDir(t)
	out, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--max-new-tokens", "12", "--json")
	if err != nil {
		t.Fatalf("model generate --chat: %v\n%s", err, stderr)
	}
	var res struct {
		Completions []struct {
			Text     string  `json:"text"`
			TokenIDs []int64 `json:"token_ids"`
		} `json:"completions"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Completions) != 1 {
		t.Fatalf("generate --json: %v\n%s", err, out)
	}
	text := res.Completions[0].Text
	// --enable-thinking=false prompts as apply_chat_template(enable_thinking=False)
	// with Qwen3's template: "<think>\n\n</think>\n\n" (4 tokens) after the
	// generation prompt.
	var stats [2]struct {
		Stats struct {
			PromptTokens int `json:"prompt_tokens"`
		} `json:"stats"`
	}
	for i, flag := range []string{"--enable-thinking=true", "--enable-thinking=false"} {
		o, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--max-new-tokens", "1", "--json", flag)
		if err != nil || json.Unmarshal([]byte(o), &stats[i]) != nil {
			t.Fatalf("model generate %s: %v\n%s%s", flag, err, o, stderr)
		}
	}
	if a, b := stats[0].Stats.PromptTokens, stats[1].Stats.PromptTokens; b != a+4 {
		t.Errorf("--enable-thinking=false: %d prompt tokens, thinking %d; want 4 more", b, a)
	}
	// Greedy (no --temperature, none in the file): --top-k is said to do nothing, as transformers warns.
	if _, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--max-new-tokens", "1", "--top-k", "3"); err != nil ||
		!strings.Contains(stderr, "--top-p and --top-k do nothing in greedy decoding") {
		t.Errorf("greedy with --top-k 3 (%v): stderr does not say the flag does nothing:\n%s", err, stderr)
	}
	plain, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--prompt", "Once upon", "--max-new-tokens", "12")
	// Prompts are numbered --ids, then --prompt, then --chat.
	if err != nil || !strings.HasPrefix(plain, "--- prompt 0, sample 0 (") || !strings.HasSuffix(plain, ") ---\n"+text+"\n") {
		t.Errorf("plain output of two prompts (%v %s):\n%s\nwant the chat's text %q last", err, stderr, plain, text)
	}

	cmd, url, serr := startServe(t, "--model", dir, "--tokenizer", "qwen3-tokenizer")
	status, chat := chatHello(t, url, 12)
	if status != 200 || len(chat.Choices) != 1 || chat.Choices[0].Message.Content != text {
		t.Errorf("serve answered %d %+v; model generate %q", status, chat, text)
	}
	stopServe(t, cmd, serr)
}

// startServe starts `tagpr serve ARGS --port 0` and returns the process,
// its API's base URL (…/v1) and its stderr; the test's end kills it.
func startServe(t *testing.T, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	cmd, url, _, serr := startServeLine(t, args...)
	return cmd, url, serr
}

// startServeLine is startServe that also returns serve's first line.
func startServeLine(t *testing.T, args ...string) (*exec.Cmd, string, string, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(tagprBin, append(append([]string{"serve"}, args...), "--port", "0")...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	serr := &bytes.Buffer{}
	cmd.Stderr = serr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v\n%s", err, serr.String())
	}
	url := regexp.MustCompile(`http://[0-9.:]+/v1`).FindString(line)
	if url == "" {
		t.Fatalf("serve's first line %q has no URL", line)
	}
	return cmd, url, line, serr
}

// stopServe sends SIGTERM and wants exit 0 within a minute.
func stopServe(t *testing.T, cmd *exec.Cmd, serr *bytes.Buffer) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v (want exit 0)\n%s", err, serr.String())
		}
	case <-time.After(time.Minute):
		t.Fatal("serve did not exit within a minute of SIGTERM")
	}
}

// TestChainsFromServeTeacher: the chains stage's teacher is a `tagpr serve`
// of the exported policy, as a user serving their own model as the teacher
// would run it. The scripted loopback teacher of TestRunLaMPEndToEnd writes
// chains that pass the filter; this one is a real model (random weights), so
// every chain is asked for (max_tokens within the fixture's 1024-token context), recorded with the served model as its teacher
// and judged (none kept): the client and the server speak the same API.
// Greedy (temperature 0): sampled, this random model now and then drew EOS
// first and answered an empty chain.
func TestChainsFromServeTeacher(t *testing.T) {
	policy, _ := filepath.Abs(policyFixture)
	cmd, url, serr := startServe(t, "--model", policy, "--served-model-name", "teacher-under-test")
	dir := t.TempDir()
	out := filepath.Join(dir, "run")
	cfg := writeConfig(t, dir, "lamp.yaml", strings.Replace(lampConfig(t, out, strings.TrimSuffix(url, "/v1")),
		"model: test-teacher", "model: teacher-under-test\n  max_tokens: 64\n  temperature: 0", 1))
	stdout, stderr, err := runTagpr(t, dir, runtimeEnv(t), "chains", "-c", cfg)
	if err != nil {
		t.Fatalf("tagpr chains with a tagpr serve teacher: %v\n%s%s\nserve: %s", err, stdout, stderr, serr.String())
	}
	for _, task := range []string{"LaMP_2M", "LaMP_3", "LaMP_4"} {
		chains, err := datasets.ReadChains(filepath.Join(out, "chains", task+".parquet"), datasets.ReadOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(chains) != 6 {
			t.Errorf("%s: %d chains, want one per training question (6)", task, len(chains))
		}
		for _, c := range chains {
			if !strings.Contains(c.Teacher, "teacher-under-test") || c.Chain == "" || len(c.Verdicts) == 0 {
				t.Errorf("%s %s: teacher %q, chain %q, %d verdicts; want the served model's text, judged", task, c.ID, c.Teacher, c.Chain, len(c.Verdicts))
			}
		}
	}
	resp, err := http.Get(strings.TrimSuffix(url, "/v1") + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := `endpoint="chat",code="200"} 18`; !strings.Contains(string(metrics), want) {
		t.Errorf("serve's /metrics lacks %q (18 chat requests, 6 questions × 3 tasks):\n%s", want, metrics)
	}
	stopServe(t, cmd, serr)
}

// `serve --generation-dtype float16` serves from float16 MatMuls (the
// batcher over a float16 model); another dtype fails at start naming the key.
func TestServeFloat16(t *testing.T) {
	dir := qwenModelDir(t)
	if _, stderr, err := runTagpr(t, ".", nil, "serve", "--model", dir, "--tokenizer", "qwen3-tokenizer", "--generation-dtype", "fp8"); err == nil || !strings.Contains(stderr, "runtime.generation_dtype") {
		t.Fatalf("serve --generation-dtype fp8: %v\n%s", err, stderr)
	}
	cmd, url, serr := startServe(t, "--model", dir, "--tokenizer", "qwen3-tokenizer", "--generation-dtype", "float16")
	status, chat := chatHello(t, url, 6)
	if status != 200 || len(chat.Choices) != 1 || chat.Choices[0].FinishReason == "" {
		t.Errorf("float16 serve answered %d %+v\n%s", status, chat, serr.String())
	}
	stopServe(t, cmd, serr)
}

// A second SIGTERM during the drain exits at once, non-zero, saying that
// requests were cut, instead of waiting out --shutdown-timeout.
func TestServeSecondSignalExitsAtOnce(t *testing.T) {
	dir := qwenModelDir(t)
	cmd, url, serr := startServe(t, "--model", dir, "--tokenizer", "qwen3-tokenizer", "--shutdown-timeout", "10m")
	body, _ := json.Marshal(map[string]any{"model": "qwen-tiny", "max_tokens": 1000, "n": 16, "ignore_eos": true, "stream": true,
		"messages": []map[string]string{{"role": "user", "content": "Go on"}}})
	resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	go io.Copy(io.Discard, resp.Body)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	health := strings.TrimSuffix(url, "/v1") + "/health"
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r, err := http.Get(health); err == nil {
			r.Body.Close()
			if r.StatusCode == 503 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start draining within 30 s of SIGTERM\n%s", serr.String())
		}
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 143 {
			t.Errorf("serve after a second SIGTERM: %v, want exit status 143\n%s", err, serr.String())
		}
		if !strings.Contains(serr.String(), "requests were cut") {
			t.Errorf("no log line says requests were cut:\n%s", serr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("serve still running 10 s after a second SIGTERM (the drain is 10 min)\n%s", serr.String())
	}
}

// With the model's generation_config.json giving sampling defaults (Qwen3's,
// plus Qwen2.5's repetition_penalty and a min_p tagpr does not implement),
// `model generate` without the flags and a request without
// temperature/top_p/top_k/repetition_penalty sample with them, both say so
// (the file's other key is warned about), and the flags or the request's
// values win; greedy decoding keeps the file's repetition_penalty, as
// transformers does.
func TestServeAndGenerateTakeGenerationConfigDefaults(t *testing.T) {
	dir := qwenModelDir(t)
	gen := `{"bos_token_id": 151643, "eos_token_id": 151643, "do_sample": true, "temperature": 0.6, "top_p": 0.95, "top_k": 20, "repetition_penalty": 1.05, "min_p": 0.05}`
	if err := os.WriteFile(filepath.Join(dir, "generation_config.json"), []byte(gen), 0o644); err != nil {
		t.Fatal(err)
	}
	generate := func(flags ...string) (string, string) {
		t.Helper()
		args := append([]string{"model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--max-new-tokens", "12", "--json"}, flags...)
		out, stderr, err := runTagpr(t, ".", nil, args...)
		if err != nil {
			t.Fatalf("%v: %v\n%s", flags, err, stderr)
		}
		var res struct {
			Completions []struct{ Text string } `json:"completions"`
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Completions) != 1 {
			t.Fatalf("%v --json: %v\n%s", flags, err, out)
		}
		return res.Completions[0].Text, stderr
	}
	sampled, stderr := generate()
	if !strings.Contains(stderr, "temperature 0.6, top_p 0.95, top_k 20, repetition_penalty 1.05 from "+filepath.Join(dir, "generation_config.json")) {
		t.Errorf("model generate does not say it samples with generation_config.json's values:\n%s", stderr)
	}
	if !strings.Contains(stderr, "warning: ") || !strings.Contains(stderr, "min_p=0.05") || strings.Contains(stderr, "repetition_penalty=") {
		t.Errorf("model generate does not warn of min_p alone:\n%s", stderr)
	}
	if explicit, stderr := generate("--temperature", "0.6", "--top-p", "0.95", "--top-k", "20", "--repetition-penalty", "1.05"); explicit != sampled || strings.Contains(stderr, "flags left out") {
		t.Errorf("left out: %q; the same values as flags: %q (stderr %s)", sampled, explicit, stderr)
	}
	greedy, stderr := generate("--temperature", "0")
	if strings.Contains(stderr, "flags left out") || !strings.Contains(stderr, "repetition_penalty 1.05 from ") {
		t.Errorf("--temperature 0 (greedy) still says it takes the file's top_p/top_k, or not that it keeps its repetition_penalty:\n%s", stderr)
	}
	// The random model does not repeat itself, so 1.05 changes nothing here;
	// a penalty below 1 (favouring the prompt's tokens) does.
	if favoured, _ := generate("--temperature", "0", "--repetition-penalty", "0.5"); favoured == greedy {
		t.Errorf("--repetition-penalty 0.5 gives the text of the file's repetition_penalty 1.05: %q", favoured)
	}
	if greedy == sampled {
		t.Errorf("--temperature 0 gives the sampled text %q: the file's defaults were not used, or the flag did not win", greedy)
	}

	cmd, url, line, serr := startServeLine(t, "--model", dir, "--tokenizer", "qwen3-tokenizer")
	if !strings.Contains(line, "temperature 0.6, top_p 0.95, top_k 20, repetition_penalty 1.05 from ") {
		t.Errorf("serve's startup line does not say the sampling defaults: %q", line)
	}
	body, _ := json.Marshal(map[string]any{"model": "qwen-tiny", "max_tokens": 12, "seed": 0,
		"messages": []map[string]string{{"role": "user", "content": "Hello there"}}})
	resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var chat helloChat
	json.NewDecoder(resp.Body).Decode(&chat)
	resp.Body.Close()
	if len(chat.Choices) != 1 || chat.Choices[0].Message.Content != sampled {
		t.Errorf("serve, seed 0, no temperature/top_p/top_k: %+v; model generate (seed 0, the same defaults) %q", chat, sampled)
	}
	if status, chat := chatHello(t, url, 12); status != 200 || len(chat.Choices) != 1 || chat.Choices[0].Message.Content != greedy {
		t.Errorf("serve, temperature 0: %d %+v; want the greedy %q", status, chat, greedy)
	}
	stopServe(t, cmd, serr)
	if !strings.Contains(serr.String(), "min_p=0.05") {
		t.Errorf("serve does not warn of min_p:\n%s", serr.String())
	}
}

// helloChat is a chat completion's answer, as the serve tests read it.
type helloChat struct {
	Choices []struct {
		Message      struct{ Content string } `json:"message"`
		FinishReason string                   `json:"finish_reason"`
	} `json:"choices"`
}

// chatHello asks the served qwen-tiny, greedily, to answer "Hello there".
func chatHello(t *testing.T, url string, maxTokens int) (int, helloChat) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"model": "qwen-tiny", "temperature": 0, "max_tokens": maxTokens,
		"messages": []map[string]string{{"role": "user", "content": "Hello there"}}})
	resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var chat helloChat
	json.NewDecoder(resp.Body).Decode(&chat)
	return resp.StatusCode, chat
}

// serve's flags are range-checked, and a --max-model-len past the model's
// positions is refused rather than quietly cut to them.
func TestServeRefusesBadFlags(t *testing.T) {
	dir := qwenModelDir(t) // 1024 positions
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-batch", "0"}, "--max-batch 0: want ≥ 1"},
		{[]string{"--max-concurrent", "-1"}, "--max-concurrent -1: want ≥ 1"},
		{[]string{"--default-max-tokens", "0"}, "--default-max-tokens 0: want ≥ 1"},
		{[]string{"--request-timeout", "0s"}, "--request-timeout 0s: want > 0"},
		{[]string{"--body-timeout", "0s"}, "--body-timeout 0s: want > 0"},
		{[]string{"--port", "70000"}, "--port 70000: want ≤ 65535"},
		{[]string{"--max-model-len", "-5"}, "--max-model-len -5: want ≥ 0"},
		{[]string{"--max-model-len", "2000"}, "--max-model-len: max model length: 2000, but the model has 1024 positions"},
	} {
		args := append([]string{"serve", "--model", dir, "--tokenizer", "qwen3-tokenizer", "--port", "0"}, c.args...)
		_, stderr, err := runTagpr(t, ".", nil, args...)
		if err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("%v: %v\n%s\nwant %q", c.args, err, stderr, c.want)
		}
	}
}

// A model whose chat template is of no family tagpr renders (Mistral's
// [INST]) is not given its chats as ChatML unsaid: `model generate --chat`
// refuses, naming tokenizer.chat_template, and renders the format that
// setting names; prompts given as text are unaffected.
func TestUnknownChatTemplateRefused(t *testing.T) {
	dir := qwenModelDir(t)
	tok, err := os.ReadFile(filepath.Join("..", "..", ".cache", "tokenizers", "qwen3", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := `{"eos_token": "<|im_end|>", "chat_template": "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"}`
	if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), tok, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	_, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--chat", "hi", "--max-new-tokens", "1")
	if err == nil || !strings.Contains(stderr, "tokenizer.chat_template") {
		t.Errorf("model generate --chat with a Mistral template: %v %q; want a refusal naming tokenizer.chat_template", err, stderr)
	}
	stdout, stderr, err := runTagpr(t, ".", []string{"TAGPR_TOKENIZER_CHAT_TEMPLATE=chatml"}, "model", "generate", dir, "--chat", "hi", "--max-new-tokens", "1")
	if err != nil {
		t.Errorf("model generate --chat with tokenizer.chat_template chatml: %v\n%s%s", err, stdout, stderr)
	}
	_, stderr, err = runTagpr(t, ".", nil, "model", "generate", dir, "--prompt", "hi", "--max-new-tokens", "1")
	if err != nil || strings.Contains(stderr, "chat template") {
		t.Errorf("model generate --prompt with a Mistral template: %v %q", err, stderr)
	}
}
