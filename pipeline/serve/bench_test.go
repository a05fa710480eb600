package serve

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/tokenize"
)

// benchModel is a ~10M-parameter built-in (4 layers, d_model 64, tied
// embeddings) with the Qwen3 tokenizer's vocabulary, as in onnx/lm's
// BenchmarkGenerate: most of its weights are the embedding, so the
// per-token vocabulary work weighs as much as the layers.
func benchModel(b *testing.B) *Model {
	tie := true
	cfg := testConfig(fixTok)
	cfg.Layers, cfg.DModel, cfg.Heads, cfg.KVHeads, cfg.FFN, cfg.TieEmbeddings, cfg.InitStd = 4, 64, 4, 2, 192, &tie, 0.02
	dir := filepath.Join(b.TempDir(), "bench")
	if _, err := lm.WriteModelDir(cfg, dir, false); err != nil {
		b.Fatal(err)
	}
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if err := copyTo(filepath.Join(randomDir, f), filepath.Join(dir, f)); err != nil {
			b.Fatal(err)
		}
	}
	m, err := Open(dir, OpenOptions{Tokenizer: fixTok})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	return m
}

// BenchmarkServe: 32 chat requests of 64 new tokens each (greedy, EOS
// ignored so every answer has the same length), answered by `tagpr serve`
// with 1, 4 and 16 concurrent streaming clients over loopback HTTP, against
// the same prompts run one after another through Model.Generate (what
// `tagpr model generate` runs) on the same model in the same process.
// Throughput is generated tokens over wall time; time to first token is
// from sending a request to its first streamed text.
func BenchmarkServe(b *testing.B) {
	m := benchModel(b)
	const requests, newTokens = 32, 64
	users := make([]string, requests)
	prompts := make([][]int64, requests)
	for i := range users {
		users[i] = fmt.Sprintf("Review %d: %s Which rating would this user give?", i, strings.Repeat("great value, ", 2+i%7))
		ids, _, err := m.EncodeChat([]tokenize.Message{{Role: "user", Content: users[i]}})
		if err != nil {
			b.Fatal(err)
		}
		prompts[i] = ids
	}
	ctx := context.Background()
	o := lm.GenerateOptions{MaxNewTokens: newTokens, IgnoreEOS: true, NoLogProbs: true}
	if _, _, err := m.Generate(ctx, prompts[:1], o); err != nil { // warm-up
		b.Fatal(err)
	}
	ts := startServer(b, m, Options{Batcher: lm.BatcherOptions{MaxRows: 16}})
	var seqTPS float64
	tps := map[int]float64{}
	ttft := map[int][]time.Duration{}
	sequential := func() {
		start, total := time.Now(), 0
		for _, p := range prompts {
			c, _, err := m.Generate(ctx, [][]int64{p}, o)
			if err != nil {
				b.Fatal(err)
			}
			total += len(c[0].Tokens)
		}
		seqTPS = max(seqTPS, float64(total)/time.Since(start).Seconds())
	}
	for i := 0; i < b.N; i++ {
		// The baseline runs before and after the server's runs and keeps its
		// faster pass, so a change in the machine's load does not favour
		// the server.
		sequential()
		streamChat(b, ts.base, m.Name, users[0], newTokens) // warm-up
		for _, conc := range []int{1, 4, 16} {
			work := make(chan int, requests)
			for r := range users {
				work <- r
			}
			close(work)
			var mu sync.Mutex
			var firsts []time.Duration
			total := 0
			var wg sync.WaitGroup
			start := time.Now()
			for w := 0; w < conc; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for r := range work {
						first, n := streamChat(b, ts.base, m.Name, users[r], newTokens)
						mu.Lock()
						firsts = append(firsts, first)
						total += n
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			tps[conc] = float64(total) / time.Since(start).Seconds()
			ttft[conc] = firsts
		}
		sequential()
	}
	fmt.Printf("bench: serve.model_generate_sequential %.1f tokens/s\n", seqTPS)
	for _, c := range []int{1, 4, 16} {
		d := ttft[c]
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		fmt.Printf("bench: serve.clients_%d %.1f tokens/s\n", c, tps[c])
		fmt.Printf("bench: serve.clients_%d_vs_sequential %.2f x\n", c, tps[c]/seqTPS)
		fmt.Printf("bench: serve.clients_%d_ttft_p50 %.1f ms\n", c, ms(quantile(d, 0.50)))
		fmt.Printf("bench: serve.clients_%d_ttft_p99 %.1f ms\n", c, ms(quantile(d, 0.99)))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// quantile of sorted durations (nearest rank).
func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// streamChat sends one greedy streaming chat request and returns the time
// to its first streamed text and its completion tokens (from the usage
// chunk).
func streamChat(b *testing.B, base, model, user string, maxTokens int) (time.Duration, int) {
	body, _ := json.Marshal(map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": user}},
		"temperature": 0, "max_tokens": maxTokens, "ignore_eos": true, "stream": true, "stream_options": map[string]bool{"include_usage": true}})
	start := time.Now()
	resp, err := http.Post(base+"/v1/chat/completions", "application/json", bytes.NewReader(body))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b.Fatalf("bench request: HTTP %d", resp.StatusCode)
	}
	var first time.Duration
	tokens := 0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || data == "[DONE]" {
			continue
		}
		var ev chatResponse
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			b.Fatal(err)
		}
		if first == 0 && len(ev.Choices) > 0 && ev.Choices[0].Delta != nil && ev.Choices[0].Delta.Content != nil && *ev.Choices[0].Delta.Content != "" {
			first = time.Since(start)
		}
		if ev.Usage != nil {
			tokens = ev.Usage.CompletionTokens
		}
	}
	if tokens != maxTokens {
		b.Fatalf("bench request: %d tokens, want %d", tokens, maxTokens)
	}
	return first, tokens
}
