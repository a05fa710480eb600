package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
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
	plain, stderr, err := runTagpr(t, ".", nil, "model", "generate", dir, "--tokenizer", "qwen3-tokenizer", "--chat", "Hello there", "--prompt", "Once upon", "--max-new-tokens", "12")
	// Prompts are numbered --ids, then --prompt, then --chat.
	if err != nil || !strings.HasPrefix(plain, "--- prompt 0, sample 0 (") || !strings.HasSuffix(plain, ") ---\n"+text+"\n") {
		t.Errorf("plain output of two prompts (%v %s):\n%s\nwant the chat's text %q last", err, stderr, plain, text)
	}

	cmd := exec.Command(tagprBin, "serve", "--model", dir, "--tokenizer", "qwen3-tokenizer", "--port", "0")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var serr bytes.Buffer
	cmd.Stderr = &serr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("serve printed no address: %v\n%s", err, serr.String())
	}
	url := regexp.MustCompile(`http://[0-9.:]+/v1`).FindString(line)
	if url == "" {
		t.Fatalf("serve's first line %q has no URL", line)
	}
	body, _ := json.Marshal(map[string]any{"model": "qwen-tiny", "temperature": 0, "max_tokens": 12,
		"messages": []map[string]string{{"role": "user", "content": "Hello there"}}})
	resp, err := http.Post(url+"/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var chat struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	json.NewDecoder(resp.Body).Decode(&chat)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(chat.Choices) != 1 || chat.Choices[0].Message.Content != text {
		t.Errorf("serve answered %d %+v; model generate %q", resp.StatusCode, chat, text)
	}
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
