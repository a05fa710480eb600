package lm

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tagpr/tagpr/onnx/ir"
	"github.com/tagpr/tagpr/onnx/onnxpb"
	"github.com/tagpr/tagpr/onnx/ort"
)

// usage is the process's user + system CPU time so far and its voluntary
// context switches, all threads: a thread that sleeps and wakes (the Go
// runtime's monitor, an idle pool thread) counts once a wake-up.
func usage() (time.Duration, int64) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Nvcsw
}

// ortPeer is one run of scripts/bench/ort_decode_peer.py.
type ortPeer struct {
	DecodeMS  float64   `json:"decode_ms_per_step"`
	PrefillMS float64   `json:"prefill_ms"`
	Cores     float64   `json:"cores_busy"`
	IDs       [][]int64 `json:"ids"`
}

// ortPeerServer is scripts/bench/ort_decode_peer.py in --serve mode: one
// loaded, warmed-up session that times one generation per request.
type ortPeerServer struct {
	python string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Scanner
}

// startORTPeer starts the onnxruntime-Python KV loop on path with
// $TAGPR_ORT_PYTHON (else python3), greedy, batch × promptLen prompts as
// benchPrompts makes them, and waits until it has warmed up.
func startORTPeer(path string, batch, promptLen, newTokens, threads int) (*ortPeerServer, error) {
	python := os.Getenv("TAGPR_ORT_PYTHON") // a Python with onnxruntime and numpy
	if python == "" {
		python = "python3"
	}
	script, err := filepath.Abs("../../scripts/bench/ort_decode_peer.py")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(python, script, "--model", path, "--batch", strconv.Itoa(batch), "--prompt-len", strconv.Itoa(promptLen),
		"--new-tokens", strconv.Itoa(newTokens), "--threads", strconv.Itoa(threads), "--serve")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %v", python, err)
	}
	p := &ortPeerServer{python: python, cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
	p.out.Buffer(make([]byte, 1<<20), 1<<24)
	if !p.out.Scan() { // {"ready": true} once the session is loaded and warm
		p.close()
		return nil, fmt.Errorf("%s: %s", python, strings.TrimSpace(stderr.String()))
	}
	return p, nil
}

// run times one generation in the peer.
func (p *ortPeerServer) run() (*ortPeer, error) {
	if _, err := io.WriteString(p.stdin, "run\n"); err != nil {
		return nil, fmt.Errorf("%s: %v", p.python, err)
	}
	if !p.out.Scan() {
		return nil, fmt.Errorf("%s: peer exited: %v", p.python, p.out.Err())
	}
	var r ortPeer
	if err := json.Unmarshal(p.out.Bytes(), &r); err != nil || r.DecodeMS <= 0 {
		return nil, fmt.Errorf("peer output %q: %v", p.out.Bytes(), err)
	}
	return &r, nil
}

func (p *ortPeerServer) close() {
	p.stdin.Close()
	p.cmd.Wait()
}

// median of xs (xs is sorted in place).
func median(xs []float64) float64 {
	sort.Float64s(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}

// BenchmarkDecodeThreads: greedy decode at batch 8 on 2 threads (16-token
// prompts, 64 new tokens, the 151k-vocabulary bench model) against the
// plainest onnxruntime-Python KV loop on the same file and threads
// (scripts/bench/ort_decode_peer.py --serve, run with $TAGPR_ORT_PYTHON,
// else python3). Both sides load and warm up once; then pairs of one run
// each, their order alternating, so that both meet the same moments of a
// machine whose speed drifts by a fifth over minutes. x_vs_ort_python is
// the median over pairs of the peer's decode time per step over tagpr's
// (goal >= 1); the ms/step figures are each side's median; cores_busy is
// CPU time over wall time during tagpr's calls (a spinning pool thread
// counts as busy); switches/step is tagpr's voluntary context switches per
// decode step (all threads), which counts the Go runtime's wake-ups
// (ort.afterRun).
func BenchmarkDecodeThreads(b *testing.B) {
	const batch, promptLen, newTokens, threads, pairs = 8, 16, 64, 2, 15
	// settle: a pause before each run, so the other side's pool threads,
	// which spin a while after a run, are asleep when it starts.
	const settle = 50 * time.Millisecond
	_, _, path := benchModelDir(b, benchConfig())
	m, err := Load(path, LoadOptions{Session: ort.Options{IntraOpThreads: threads}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(batch, promptLen)
	o := GenerateOptions{MaxNewTokens: newTokens, IgnoreEOS: true, NoLogProbs: true}
	var comps []Completion
	var switches []float64
	run := func() (ms, cores float64) {
		time.Sleep(settle)
		c0, v0 := usage()
		w0 := time.Now()
		c, st, err := m.Generate(context.Background(), prompts, o)
		if err != nil {
			b.Fatal(err)
		}
		comps = c
		c1, v1 := usage()
		switches = append(switches, float64(v1-v0)/float64(st.DecodeSteps))
		return st.Decode.Seconds() * 1e3 / float64(st.DecodeSteps), (c1 - c0).Seconds() / time.Since(w0).Seconds()
	}
	run() // warm-up
	peer, err := startORTPeer(path, batch, promptLen, newTokens, threads)
	if err != nil {
		ours, cores := run()
		b.ReportMetric(ours, "ms/step")
		b.ReportMetric(cores, "cores_busy")
		fmt.Printf("note: no onnxruntime-Python peer for decode (%v); set TAGPR_ORT_PYTHON to a Python with onnxruntime and numpy\n",
			strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	defer peer.close()
	var ours, theirs, ratio, busy, peerBusy []float64
	same := 1.0
	for i := 0; i < b.N; i++ {
		for k := 0; k < pairs; k++ {
			var ms, cores float64
			var p *ortPeer
			if k%2 == 0 {
				ms, cores = run()
			}
			time.Sleep(settle)
			if p, err = peer.run(); err != nil {
				b.Fatal(err)
			}
			if k%2 == 1 {
				ms, cores = run()
			}
			for r, c := range comps {
				if r >= len(p.IDs) || !equalIDs(c.Tokens, p.IDs[r]) {
					same = 0
				}
			}
			ours, theirs, ratio = append(ours, ms), append(theirs, p.DecodeMS), append(ratio, p.DecodeMS/ms)
			busy, peerBusy = append(busy, cores), append(peerBusy, p.Cores)
		}
	}
	b.ReportMetric(median(ours), "ms/step")
	b.ReportMetric(median(busy), "cores_busy")
	b.ReportMetric(median(switches), "switches/step")
	b.ReportMetric(median(theirs), "ort_python_ms/step")
	b.ReportMetric(median(peerBusy), "ort_python_cores_busy")
	b.ReportMetric(median(ratio), "x_vs_ort_python")
	b.ReportMetric(same, "same_tokens")
}

// BenchmarkSampleLogProbs: sampling at temperature 1 with log-probs (as RL
// rollouts run) at batch 8 with the 151k vocabulary, 16-token prompts, 64
// new tokens, against bare decode runs of the same session: the same
// prefill, then the model's session runs alone over the same shapes, one
// after the other with nothing between them. x_vs_bare_ort is the sampled
// decode step over the bare run (goal <= 1.15); the rounds alternate and
// each side keeps its best. With the head in the model's graph the bare
// runs include its row max (and its Ifs, off).
func BenchmarkSampleLogProbs(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	benchSampleLogProbs(b, path, 64, 4)
}

// benchSampleLogProbs is BenchmarkSampleLogProbs on the model at path:
// batch 8, 16-token prompts, newTokens new tokens, rounds alternating rounds.
func benchSampleLogProbs(b *testing.B, path string, newTokens, rounds int) {
	const batch, promptLen = 8, 16
	m, err := Load(path, LoadOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	prompts := benchPrompts(batch, promptLen)
	o := GenerateOptions{MaxNewTokens: newTokens, IgnoreEOS: true, Sampling: Sampling{Temperature: 1}, Seed: 1}
	sample := func() Stats {
		_, st, err := m.Generate(context.Background(), prompts, o)
		if err != nil {
			b.Fatal(err)
		}
		return st
	}
	sample() // warm-up
	var st Stats
	bare, headOn := time.Duration(1<<62), time.Duration(1<<62)
	for i := 0; i < b.N; i++ {
		for round := 0; round < rounds; round++ {
			if s := sample(); round == 0 || s.Decode < st.Decode {
				st = s
			}
			bare = min(bare, bareDecodeRuns(b, m, prompts, newTokens, nil))
			if m.Layout.HasDecodeHead {
				headOn = min(headOn, bareDecodeRuns(b, m, prompts, newTokens, &graphHeadReq{kind: headKind{sample: true, logProbs: true}, inv: 1}))
			}
		}
	}
	step := st.Decode / time.Duration(st.DecodeSteps)
	b.ReportMetric(step.Seconds()*1e3, "ms/step")
	b.ReportMetric(bare.Seconds()*1e3, "bare_ort_ms/step")
	// run_ms: the session runs (the model, and the head when it is in the
	// graph); head_ms: the separate head session (the first token's alone
	// when the head is in the graph).
	b.ReportMetric(st.DecodeORT.Seconds()*1e3/float64(st.DecodeSteps), "run_ms/step")
	b.ReportMetric(st.Head.Seconds()*1e3/float64(st.DecodeSteps+1), "head_ms/step")
	b.ReportMetric(st.Pick.Seconds()*1e3/float64(st.DecodeSteps+1), "pick_ms/step")
	b.ReportMetric(step.Seconds()/bare.Seconds(), "x_vs_bare_ort")
	if m.Layout.HasDecodeHead {
		// The same bare runs with the in-graph head's softmax and sums on.
		b.ReportMetric(headOn.Seconds()*1e3, "head_on_ort_ms/step")
		b.ReportMetric(headOn.Seconds()/bare.Seconds(), "x_head_on_vs_bare_ort")
	}
}

// bareDecodeRuns prefills prompts and runs newTokens-1 decode steps of the
// model's session back to back (token 1 fed to every row), returning the
// mean session run time per step; head (nil: off) is what the in-graph
// decode head computes in the decode steps.
func bareDecodeRuns(b *testing.B, m *Model, prompts [][]int64, newTokens int, head *graphHeadReq) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	T0 := len(prompts[0])
	g, err := m.newGen(len(prompts), len(prompts), T0+newTokens)
	if err != nil {
		b.Fatal(err)
	}
	defer g.release()
	var d time.Duration
	if _, _, _, err := g.prefill(context.Background(), prompts, 0, 0, &d); err != nil {
		b.Fatal(err)
	}
	d = 0
	g.head = head
	for s := 1; s < newTokens; s++ {
		ids := g.ids(1)
		for r := range ids {
			ids[r] = 1
		}
		if _, _, err := g.forward(context.Background(), 1, 1, &d); err != nil {
			b.Fatal(err)
		}
	}
	return d / time.Duration(newTokens-1)
}

// BenchmarkInGraphHeadCost measures what moving the decode head into the
// model's own graph would cost (docs/large-models.md, "Threads in
// decoding"): bare decode runs (batch 8, the 151k-vocabulary bench model,
// default threads) of the model as loaded and of edited copies, in
// alternating rounds, each keeping its best. The copies append ReduceMax of
// the logits (greedy's work), or Softmax + ReduceSum (untempered
// sampling's), or that softmax behind an If on a bound bool input, run off
// and on. ORT computes every node of a graph whatever outputs a run
// fetches, so appended ops cost every run unless an If skips them.
func BenchmarkInGraphHeadCost(b *testing.B) {
	_, _, path := benchModelDir(b, benchConfig())
	raw, err := os.ReadFile(path)
	if err != nil {
		b.Fatal(err)
	}
	// softmaxSum appends probs = Softmax(logits) and their row sums to g.
	softmaxSum := func(g *ir.Graph) string {
		axes := g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{g.Unique("head/axes")},
			Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", int64(-1)))}}).Output[0]
		probs := g.Op("Softmax", []string{Logits}, ir.AttrInt("axis", -1))
		return g.Op("ReduceSum", []string{probs, axes}, ir.AttrInt("keepdims", 1))
	}
	load := func(variant string) *Model {
		pm, err := ir.Read(raw, path)
		if err != nil {
			b.Fatal(err)
		}
		g := ir.WrapGraph(pm.GetGraph())
		switch variant {
		case "rowmax":
			axes := g.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{g.Unique("head/axes")},
				Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", int64(-1)))}}).Output[0]
			g.Node("ReduceMax", []string{Logits, axes}, []string{"head/out"}, ir.AttrInt("keepdims", 1))
			g.Output("head/out", ir.Float, "batch", 1, 1)
		case "softmax_sum":
			g.Node("Identity", []string{softmaxSum(g)}, []string{"head/out"})
			g.Output("head/out", ir.Float, "batch", 1, 1)
		case "if_off", "if_on":
			g.Input("head/on", ir.Bool, 1)
			cond := g.Op("Squeeze", []string{"head/on"})
			on := g.Subgraph("head_on")
			on.Node("Identity", []string{softmaxSum(on)}, []string{"head/on_out"})
			on.Output("head/on_out", ir.Float, "batch", 1, 1)
			off := g.Subgraph("head_off")
			off.AddNode(&onnxpb.NodeProto{OpType: "Constant", Output: []string{"head/off_out"},
				Attribute: []ir.Attribute{ir.AttrTensor("value", ir.Vector("", float32(0)))}})
			off.Output("head/off_out", ir.Float, 1)
			g.Node("If", []string{cond}, []string{"head/out"},
				ir.AttrGraph("then_branch", on.Proto), ir.AttrGraph("else_branch", off.Proto))
			g.Output("head/out", ir.Float, "n")
		}
		if err := g.Err(); err != nil {
			b.Fatal(err)
		}
		bs, err := ir.Marshal(pm)
		if err != nil {
			b.Fatal(err)
		}
		m, err := LoadBytes(bs, path+" "+variant, LoadOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(variant, "if_") {
			t, err := ort.NewTensor([]int64{1}, []bool{variant == "if_on"})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { t.Destroy() })
			if err := m.Bind("head/on", t); err != nil {
				b.Fatal(err)
			}
		}
		return m
	}
	variants := []string{"bare", "rowmax", "softmax_sum", "if_off", "if_on"}
	models := make([]*Model, len(variants))
	for i, v := range variants {
		models[i] = load(v)
		defer models[i].Close()
	}
	prompts := benchPrompts(8, 16)
	best := make([]time.Duration, len(models))
	for i := 0; i < b.N; i++ {
		for round := 0; round < 4; round++ {
			for k, m := range models {
				if d := bareDecodeRuns(b, m, prompts, 64, nil); best[k] == 0 || d < best[k] {
					best[k] = d
				}
			}
		}
	}
	for k, v := range variants {
		b.ReportMetric(best[k].Seconds()*1e3, v+"_ms/step")
		if k > 0 {
			b.ReportMetric(best[k].Seconds()/best[0].Seconds(), "x_"+v+"_vs_bare")
		}
	}
}
