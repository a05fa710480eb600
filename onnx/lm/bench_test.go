package lm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/ort"
)

// benchConfig is the built-in ~10M-parameter model of the benchmarks: a
// Qwen-style llama with the Qwen3 tokenizer's vocabulary (151,669 ids) and
// tied embeddings, like the policies tagpr trains — most of its weights are
// the embedding, so the per-token vocabulary work matters as much as the
// layers.
func benchConfig() Config {
	tie := true
	return Config{Arch: Llama, Layers: 4, DModel: 64, Heads: 4, KVHeads: 2, FFN: 192, Vocab: 151669,
		MaxPositions: 1024, Seed: 1, EOS: 2, BOS: 1, TieEmbeddings: &tie}
}

// benchConfigDeep is a ~10M-parameter model whose time goes to the layers
// (8k vocabulary, d_model 256, 8 layers), to show the engine there too.
func benchConfigDeep() Config {
	return Config{Arch: Llama, Layers: 8, DModel: 256, Heads: 8, KVHeads: 4, FFN: 704, Vocab: 8192,
		MaxPositions: 1024, Seed: 1, EOS: 2, BOS: 1}
}

// benchModelDir writes a benchmark model in the transformers.js layout
// (root/NAME/onnx/model.onnx + configs) and returns root, name, model path.
func benchModelDir(b *testing.B, c Config) (string, string, string) {
	b.Helper()
	root := b.TempDir()
	name := "tagpr-bench"
	path, err := WriteModelDir(c, filepath.Join(root, name), true)
	if err != nil {
		b.Fatal(err)
	}
	return root, name, path
}

func benchPrompts(batch, length int) [][]int64 {
	p := make([][]int64, batch)
	for i := range p {
		for t := 0; t < length; t++ {
			p[i] = append(p[i], int64(t+1)) // what the transformers.js script feeds
		}
	}
	return p
}

// bestStats runs f reps times and keeps the fastest run: on a shared,
// noisy machine the minimum is the least disturbed measurement (both
// engines are measured the same way).
func bestStats(reps int, f func() Stats) Stats {
	var best Stats
	for i := 0; i < reps; i++ {
		st := f()
		if i == 0 || st.Decode+st.Prefill < best.Decode+best.Prefill {
			best = st
		}
	}
	return best
}

// BenchmarkGenerate: 64 new tokens after a 16-token prompt at batch 1, 8
// and 32, greedy (as the transformers.js comparison runs) and sampled at
// temperature 1 with log-probs (as RL rollouts run). x_engine_vs_ort is
// decode wall time over the sum of the model's session runs inside it (goal
// <= 1.15); head_ms/step is the decode head's share (see head.go).
func BenchmarkGenerate(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	fmt.Printf("bench: lm.model_params %d params\n", benchConfig().Params())
	for _, mode := range []string{"greedy", "sample"} {
		for _, batch := range []int{1, 8, 32} {
			b.Run(fmt.Sprintf("%s/batch=%d", mode, batch), func(b *testing.B) {
				prompts := benchPrompts(batch, 16)
				o := GenerateOptions{MaxNewTokens: 64, IgnoreEOS: true, NoLogProbs: true}
				if mode == "sample" {
					o.Sampling, o.NoLogProbs, o.Seed = Sampling{Temperature: 1}, false, 1
				}
				run := func() Stats {
					_, st, err := m.Generate(context.Background(), prompts, o)
					if err != nil {
						b.Fatal(err)
					}
					return st
				}
				run() // warm-up: buffers and ORT's arena
				if mode == "sample" {
					var st Stats
					for i := 0; i < b.N; i++ {
						st = bestStats(3, run)
					}
					reportDecode(b, st, batch)
					return
				}
				// Greedy: interleave the engine with the plainest Go loop over
				// the same session runs, so both see the same machine load.
				var st Stats
				bare := time.Duration(1 << 62)
				for i := 0; i < b.N; i++ {
					for rep := 0; rep < 4; rep++ {
						if s := run(); rep == 0 || s.Decode+s.Prefill < st.Decode+st.Prefill {
							st = s
						}
						bare = min(bare, bareGreedy(b, path, benchConfig(), batch, 16, 64))
					}
				}
				reportDecode(b, st, batch)
				b.ReportMetric(st.Decode.Seconds()/float64(st.DecodeSteps)/bare.Seconds(), "x_engine_vs_bare_loop")
			})
		}
	}
}

// BenchmarkRollout: a GRPO-style rollout — 4 prompts of 256 tokens, 8
// samples each (temperature 1, log-probs), 64 new tokens; each prompt is
// prefilled once for its group. rollout_tok/s counts generated tokens over
// the whole call.
func BenchmarkRollout(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(4, 256)
	o := GenerateOptions{MaxNewTokens: 64, NumGenerations: 8, Sampling: Sampling{Temperature: 1}, Seed: 1, IgnoreEOS: true}
	run := func() Stats {
		_, st, err := m.Generate(context.Background(), prompts, o)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	run()
	var st Stats
	for i := 0; i < b.N; i++ {
		st = bestStats(3, run)
	}
	b.ReportMetric(float64(st.GeneratedTokens)/(st.Prefill+st.Decode).Seconds(), "rollout_tok/s")
	b.ReportMetric(st.Prefill.Seconds()*1e3, "prefill_ms")
	b.ReportMetric(st.Decode.Seconds()/st.DecodeORT.Seconds(), "x_engine_vs_ort")
}

func reportDecode(b *testing.B, st Stats, batch int) {
	b.ReportMetric(float64(batch*st.DecodeSteps)/st.Decode.Seconds(), "decode_tok/s")
	b.ReportMetric(float64(st.PromptTokens)/st.Prefill.Seconds(), "prefill_tok/s")
	b.ReportMetric(st.Decode.Seconds()*1e3/float64(st.DecodeSteps), "ms/step")
	b.ReportMetric(st.Head.Seconds()*1e3/float64(st.DecodeSteps+1), "head_ms/step")
	b.ReportMetric(st.Pick.Seconds()*1e3/float64(st.DecodeSteps+1), "pick_ms/step")
	b.ReportMetric(st.Decode.Seconds()/st.DecodeORT.Seconds(), "x_engine_vs_ort")
}

// BenchmarkGenerateDeep: the layer-heavy ~10M model, greedy, batch 1 and 8.
func BenchmarkGenerateDeep(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfigDeep())
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	for _, batch := range []int{1, 8} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			prompts := benchPrompts(batch, 16)
			run := func() Stats {
				_, st, err := m.Generate(context.Background(), prompts, GenerateOptions{MaxNewTokens: 64, IgnoreEOS: true, NoLogProbs: true})
				if err != nil {
					b.Fatal(err)
				}
				return st
			}
			run()
			var st Stats
			for i := 0; i < b.N; i++ {
				st = bestStats(3, run)
			}
			reportDecode(b, st, batch)
		})
	}
}

// BenchmarkPrefill: a batch of 8 prompts of 128 tokens, one new token.
func BenchmarkPrefill(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(8, 128)
	run := func() Stats {
		_, st, err := m.Generate(context.Background(), prompts, GenerateOptions{MaxNewTokens: 1, IgnoreEOS: true, NoLogProbs: true})
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	run()
	var st Stats
	for i := 0; i < b.N; i++ {
		st = bestStats(3, run)
	}
	b.ReportMetric(float64(st.PromptTokens)/st.Prefill.Seconds(), "prefill_tok/s")
	b.ReportMetric(st.Prefill.Seconds()/st.PrefillORT.Seconds(), "x_engine_vs_ort")
}

// BenchmarkVsTransformersJS: the same ONNX file, the same greedy settings
// (batch 1, 16-token prompt, 64 new tokens, EOS ignored), generated by
// transformers.js (Node, onnxruntime-node 1.30, local files only) and by
// tagpr in the same run, for both benchmark models. x_vs_transformersjs is
// transformers.js decode time per token over tagpr's (goal >= 2). Without
// the peer installed it says how to install it and reports tagpr's side.
func BenchmarkVsTransformersJS(b *testing.B) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{{"qwen_vocab", benchConfig()}, {"deep", benchConfigDeep()}} {
		b.Run(tc.name, func(b *testing.B) { vsTransformersJS(b, tc.cfg) })
	}
}

func vsTransformersJS(b *testing.B, cfg Config) {
	root, name, path := benchModelDir(b, cfg)
	const batch, promptLen, newTokens = 1, 16, 64
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(batch, promptLen)
	var comps []Completion
	run := func() Stats {
		c, st, err := m.Generate(context.Background(), prompts, GenerateOptions{MaxNewTokens: newTokens, IgnoreEOS: true, NoLogProbs: true})
		if err != nil {
			b.Fatal(err)
		}
		comps = c
		return st
	}
	run()
	var st Stats
	for i := 0; i < b.N; i++ {
		st = bestStats(5, run)
	}
	report := func() {
		b.ReportMetric(st.Decode.Seconds()*1e3/float64(st.DecodeSteps), "tagpr_ms/step")
		b.ReportMetric(st.Prefill.Seconds()*1e3, "tagpr_prefill_ms")
	}
	peer, script, ok := findPeer()
	if !ok {
		fmt.Printf("lm: transformers.js peer not installed in %s; install it with scripts/bench/install-transformersjs.sh "+
			"(≈470 MB, npm) to get x_vs_transformersjs\n", peer)
		report()
		return
	}
	type peerResult struct {
		PrefillMS float64   `json:"prefill_ms"`
		DecodeMS  float64   `json:"decode_ms_per_step"`
		IDs       [][]int64 `json:"ids"`
	}
	// Two rounds, tagpr and the peer in turn, keeping each side's best:
	// load that comes and goes on a shared machine then hits both alike.
	var res *peerResult
	for round := 0; round < 2; round++ {
		if round > 0 {
			if st2 := bestStats(5, run); st2.Decode+st2.Prefill < st.Decode+st.Prefill {
				st = st2
			}
		}
		cmd := exec.Command("node", script, peer, root, name, strconv.Itoa(batch), strconv.Itoa(promptLen), strconv.Itoa(newTokens), "5")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		start := time.Now()
		if err := cmd.Run(); err != nil {
			fmt.Printf("lm: transformers.js run failed (%v) after %v: %s\n", err, time.Since(start).Round(time.Millisecond), lastLines(errb.String(), 5))
			report()
			return
		}
		var r peerResult
		if err := json.Unmarshal(lastLine(out.Bytes()), &r); err != nil {
			fmt.Printf("lm: transformers.js output unreadable: %v: %s\n", err, out.String())
			report()
			return
		}
		if res == nil || r.DecodeMS < res.DecodeMS {
			res = &r
		}
	}
	ours := st.Decode.Seconds() * 1e3 / float64(st.DecodeSteps)
	report()
	same := 1.0
	for r := range comps {
		if r >= len(res.IDs) || !equalIDs(comps[r].Tokens, res.IDs[r]) {
			same = 0
			fmt.Printf("lm: transformers.js generated %v, tagpr %v\n", res.IDs, comps[r].Tokens)
		}
	}
	b.ReportMetric(res.DecodeMS, "transformersjs_ms/step")
	b.ReportMetric(res.PrefillMS, "transformersjs_prefill_ms")
	b.ReportMetric(res.DecodeMS/ours, "x_vs_transformersjs")
	b.ReportMetric(same, "same_tokens")
}

// findPeer locates the transformers.js install (TAGPR_PEER_DIR or
// .cache/peers/transformersjs in the repository) and the driver script.
func findPeer() (peer, script string, ok bool) {
	dir, _ := os.Getwd()
	root := dir
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			root = d
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	peer = os.Getenv("TAGPR_PEER_DIR")
	if peer == "" {
		peer = filepath.Join(root, ".cache", "peers", "transformersjs")
	}
	script = filepath.Join(root, "scripts", "bench", "transformersjs-generate.mjs")
	if _, err := os.Stat(filepath.Join(peer, "node_modules", "@huggingface", "transformers", "package.json")); err != nil {
		return peer, script, false
	}
	if _, err := exec.LookPath("node"); err != nil {
		return peer, script, false
	}
	return peer, script, true
}

func lastLine(b []byte) []byte {
	lines := bytes.Split(bytes.TrimSpace(b), []byte("\n"))
	return lines[len(lines)-1]
}

func lastLines(s string, n int) string {
	lines := bytes.Split(bytes.TrimSpace([]byte(s)), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte(" | ")))
}

// bareGreedy is the simplest greedy loop over onnx/ort: ORT allocates every
// output (onnxruntime_go copies it into Go memory), presents are fed back as
// pasts, argmax in Go. It returns the mean decode step time.
func bareGreedy(b *testing.B, path string, c Config, B, T0, N int) time.Duration {
	c = c.Defaults()
	sess, err := ort.NewSessionFromFile(path, ort.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Destroy()
	in := map[string]ort.Value{}
	var own []ort.Value
	defer func() {
		for _, v := range own {
			v.Destroy()
		}
	}()
	feed := func(name string, shape []int64, data []int64) {
		v, err := ort.NewTensor(shape, data)
		if err != nil {
			b.Fatal(err)
		}
		own = append(own, v)
		in[name] = v
	}
	ids, pos, mask := make([]int64, B*T0), make([]int64, B*T0), make([]int64, B*(T0+N))
	for r := 0; r < B; r++ {
		for t := 0; t < T0; t++ {
			ids[r*T0+t], pos[r*T0+t] = int64(t+1), int64(t)
		}
	}
	for i := range mask {
		mask[i] = 1
	}
	feed(InputIDs, []int64{int64(B), int64(T0)}, ids)
	feed(PositionIDs, []int64{int64(B), int64(T0)}, pos)
	feed(AttentionMask, []int64{int64(B), int64(T0)}, mask[:B*T0])
	for l := 0; l < c.Layers; l++ {
		for _, n := range []string{PastKey(l), PastValue(l)} {
			v, err := ort.NewTensor([]int64{int64(B), int64(c.KVHeads), 0, int64(c.HeadDim)}, []float32{})
			if err != nil {
				b.Fatal(err)
			}
			own = append(own, v)
			in[n] = v
		}
	}
	var prev *ort.Outputs
	var start time.Time
	for s := 0; s < N; s++ {
		if s == 1 {
			start = time.Now()
		}
		out, err := sess.Run(in, nil)
		if err != nil {
			b.Fatal(err)
		}
		if prev != nil {
			prev.Destroy()
		}
		prev = out
		lg, err := ort.Data[float32](Logits, out.Get(Logits))
		if err != nil {
			b.Fatal(err)
		}
		T, V, P := int(out.Get(Logits).GetShape()[1]), c.Vocab, T0+s
		next, np := make([]int64, B), make([]int64, B)
		for r := 0; r < B; r++ {
			tok, _ := argmax(lg[(r*T+T-1)*V : (r*T+T)*V])
			next[r], np[r] = int64(tok), int64(P)
		}
		feed(InputIDs, []int64{int64(B), 1}, next)
		feed(PositionIDs, []int64{int64(B), 1}, np)
		feed(AttentionMask, []int64{int64(B), int64(P + 1)}, mask[:B*(P+1)])
		for l := 0; l < c.Layers; l++ {
			in[PastKey(l)], in[PastValue(l)] = out.Get(PresentKey(l)), out.Get(PresentValue(l))
		}
	}
	d := time.Since(start)
	prev.Destroy()
	return d / time.Duration(N-1)
}
