package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/renameio/v2"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/lock"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// The tests serve two small built-in models with the real Qwen3 tokenizer
// (its chat template, special tokens and 151,669-id vocabulary):
//   - random: seeded random weights, so answers are arbitrary text but
//     deterministic, and attention over the prompt matters;
//   - scripted: a random model edited into a lookup table that answers any
//     chat with "<think>Let me think</think>\n\nHello there.<|im_end|>",
//     for the reasoning split and EOS.
var (
	fixRoot     string
	randomDir   string
	scriptedDir string
)

func TestMain(m *testing.M) {
	if err := ort.Init(""); err != nil {
		fmt.Fprintln(os.Stderr, "pipeline/serve tests need ONNX Runtime (run `make setup`):", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "tagpr-serve-")
	if err != nil {
		panic(err)
	}
	fixRoot = dir
	if err := buildFixtures(dir); err != nil {
		fmt.Fprintln(os.Stderr, "build serve test models:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	for _, m := range opened {
		m.Close()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// qwen3Files returns the pinned Qwen3 tokenizer.json and
// tokenizer_config.json (verified against models.lock).
func qwen3Files() (string, string, error) {
	lp, err := lock.Find(".")
	if err != nil {
		return "", "", err
	}
	f, err := lock.Load(lp)
	if err != nil {
		return "", "", err
	}
	var paths []string
	for _, name := range []string{"qwen3-tokenizer", "qwen3-tokenizer-config"} {
		e, ok := f.Lookup(name)
		if !ok {
			return "", "", fmt.Errorf("%s has no %s", lp, name)
		}
		if err := f.Verify(e); err != nil {
			return "", "", fmt.Errorf("%s: %w (run `make setup`)", name, err)
		}
		paths = append(paths, f.Abs(e))
	}
	return paths[0], paths[1], nil
}

func copyTo(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o644)
}

// testConfig is the tests' model shape: tiny layers, the tokenizer's
// vocabulary, EOS <|endoftext|> (the tokenizer adds <|im_end|>).
func testConfig(tok *tokenize.Tokenizer) lm.Config {
	eos, _ := tok.TokenID("<|endoftext|>")
	return lm.Config{Arch: lm.Llama, Layers: 2, DModel: 32, Heads: 2, KVHeads: 1, Vocab: tok.VocabSize(),
		MaxPositions: 4096, Seed: 5, InitStd: 0.05, EOS: int64(eos), BOS: int64(eos)}
}

func buildFixtures(root string) error {
	tj, tc, err := qwen3Files()
	if err != nil {
		return err
	}
	tok, err := tokenize.Load(tj)
	if err != nil {
		return err
	}
	fixTok = tok
	randomDir, scriptedDir = filepath.Join(root, "random"), filepath.Join(root, "scripted")
	cfg := testConfig(tok)
	if _, err := lm.WriteModelDir(cfg, randomDir, false); err != nil {
		return err
	}
	if err := writeScripted(cfg, tok, scriptedDir); err != nil {
		return err
	}
	for _, d := range []string{randomDir, scriptedDir} {
		if err := copyTo(tj, filepath.Join(d, "tokenizer.json")); err != nil {
			return err
		}
		if err := copyTo(tc, filepath.Join(d, "tokenizer_config.json")); err != nil {
			return err
		}
	}
	return nil
}

// scriptText is what the scripted model answers any chat with (before its
// end-of-turn token).
const scriptText = "<think>Let me think</think>\n\nHello there."

// writeScripted builds a model whose next token depends only on the
// current one, following a fixed chain from the chat template's last
// prompt token ("\n" after "assistant"): attention and MLP outputs are
// zeroed, each chain token's embedding is a basis vector, and the output
// column of its successor points along it.
func writeScripted(cfg lm.Config, tok *tokenize.Tokenizer, dir string) error {
	tie := false
	cfg.TieEmbeddings = &tie
	cfg.Layers = 1
	chain := []string{"\n", "<think>", "Let", " me", " think", "</think>", "\n\n", "Hello", " there", ".", "<|im_end|>"}
	ids := make([]int64, len(chain))
	for i, s := range chain {
		if id, ok := tok.TokenID(s); ok && strings.HasPrefix(s, "<") {
			ids[i] = id
			continue
		}
		enc := tok.Encode(s)
		if len(enc) != 1 {
			return fmt.Errorf("scripted model: %q is %d tokens, want 1", s, len(enc))
		}
		ids[i] = enc[0]
	}
	pm, err := lm.Build(cfg)
	if err != nil {
		return err
	}
	d, V := cfg.DModel, cfg.Vocab
	edit := func(name string, f func(data []float32, dims []int64)) error {
		for i, t := range pm.Graph.Initializer {
			if t.GetName() != name {
				continue
			}
			data, err := ir.Float32s(t)
			if err != nil {
				return err
			}
			f(data, t.Dims)
			pm.Graph.Initializer[i] = ir.Tensor(name, t.Dims, data)
			return nil
		}
		return fmt.Errorf("scripted model: no initializer %q", name)
	}
	zero := func(data []float32, _ []int64) { clear(data) }
	for _, n := range []string{"model.layers.0.self_attn.o_proj.weight", "model.layers.0.mlp.down_proj.weight"} {
		if err := edit(n, zero); err != nil {
			return err
		}
	}
	if err := edit("model.embed_tokens.weight", func(e []float32, _ []int64) {
		for k, id := range ids[:len(ids)-1] {
			row := e[int(id)*d : (int(id)+1)*d]
			clear(row)
			row[k] = 1
		}
	}); err != nil {
		return err
	}
	if err := edit("lm_head.weight", func(w []float32, _ []int64) {
		for k := range ids[:len(ids)-1] {
			next := int(ids[k+1])
			for j := 0; j < d; j++ {
				w[j*V+next] = 0
			}
			w[k*V+next] = 10
		}
	}); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := ir.Write(pm, filepath.Join(dir, "model.onnx"), ir.WriteOptions{}); err != nil {
		return err
	}
	for name, v := range map[string]any{"config.json": lm.HFConfigFor(cfg), "generation_config.json": lm.GenerationConfigFor(cfg)} {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := renameio.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// opened are the fixture models, opened once (loading the Qwen3 tokenizer
// takes seconds) and shared by the tests, which run one after another; a
// model serves any number of batchers.
var (
	openMu sync.Mutex
	opened = map[string]*Model{}
	fixTok *tokenize.Tokenizer
)

func openModel(t testing.TB, dir string) *Model {
	t.Helper()
	openMu.Lock()
	defer openMu.Unlock()
	if m := opened[dir]; m != nil {
		return m
	}
	m, err := Open(dir, OpenOptions{Tokenizer: fixTok, Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	opened[dir] = m
	return m
}

// testServer is a Server listening on a loopback port.
type testServer struct {
	*Server
	base   string
	cancel context.CancelFunc
	done   chan error
}

func startServer(t testing.TB, m *Model, o Options) *testServer {
	t.Helper()
	s, err := New(m, o)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: s, base: "http://" + ln.Addr().String(), cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- s.Serve(ctx, ln, 30*time.Second) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ts.done:
		case <-time.After(time.Minute):
			t.Error("server did not stop within a minute")
		}
	})
	return ts
}

// post sends a JSON body and returns the status and decoded body.
func post(t testing.TB, url string, body any) (int, map[string]any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("POST %s: status %d, body is not JSON: %v\n%s", url, resp.StatusCode, err, raw)
	}
	return resp.StatusCode, out
}

// sseEvents reads a text/event-stream body: each data payload, in order,
// without the final [DONE] (which it requires).
func sseEvents(t testing.TB, r io.Reader) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	done := false
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("SSE line %q lacks the data: prefix", line)
		}
		if done {
			t.Fatalf("event after [DONE]: %s", data)
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		var ev map[string]any
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			t.Fatalf("SSE data is not JSON: %v: %s", err, data)
		}
		out = append(out, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if !done {
		t.Fatal("the stream did not end with data: [DONE]")
	}
	return out
}

// postStream sends a request with stream: true and returns its events.
func postStream(t testing.TB, url string, body map[string]any) []map[string]any {
	t.Helper()
	body["stream"] = true
	b, _ := json.Marshal(body)
	resp, err := http.Post(url, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		raw, _ := io.ReadAll(resp.Body)
		t.Fatalf("stream: status %d, type %q: %s", resp.StatusCode, resp.Header.Get("Content-Type"), raw)
	}
	return sseEvents(t, resp.Body)
}

// field digs into decoded JSON: field(v, "choices", 0, "message", "content").
func field(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			a, ok := v.([]any)
			if !ok || k >= len(a) {
				return nil
			}
			v = a[k]
		}
	}
	return v
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func intOf(v any) int {
	f, _ := v.(float64)
	return int(f)
}

func listen() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") }

func generateGreedy(maxTokens int) lm.GenerateOptions {
	return lm.GenerateOptions{MaxNewTokens: maxTokens, NoLogProbs: true}
}
