package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tagpr/tagpr/datasets"
)

// shardTeacher is an OpenAI-compatible chat endpoint whose tagged chain
// depends only on the prompt (five variants, so chains repeat across shards
// and the duplicates verdict matters). Requests are counted per API key (one
// key per worker run); the request of key blockKey numbered blockAt blocks,
// after signalling blocked, until its client goes away.
type shardTeacher struct {
	mu       sync.Mutex
	requests map[string]int
	blockKey string
	blockAt  int
	blocked  chan struct{}
}

func (s *shardTeacher) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Messages []struct{ Content string } `json:"messages"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Messages) == 0 {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	s.mu.Lock()
	s.requests[key]++
	n := s.requests[key]
	s.mu.Unlock()
	if key == s.blockKey && n == s.blockAt {
		close(s.blocked)
		<-r.Context().Done() // the worker is killed while waiting for this answer
		return
	}
	h := fnv.New32a()
	h.Write([]byte(req.Messages[len(req.Messages)-1].Content))
	v := h.Sum32() % 5
	labels := []string{"comedy", "drama", "horror", "romance", "action"}
	chain := fmt.Sprintf("<think>\n<understand_task>Pick the tag this user would give.</understand_task>\n"+
		"<recall_history>The history leans to %[1]s (variant %[2]d).</recall_history>\n"+
		"<infer_preference>So the user prefers %[1]s.</infer_preference>\n"+
		"<conclude>%[1]s fits best.</conclude>\n</think>\n<answer>%[1]s</answer>", labels[v], v)
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"id": "x", "object": "chat.completion", "model": "fake",
		"choices": []map[string]any{{"index": 0, "finish_reason": "stop", "message": map[string]string{"role": "assistant", "content": chain}}}})
}

func (s *shardTeacher) count(key string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[key]
}

// Chains from a teacher as a Kubernetes Indexed Job would run them: three
// worker processes with --shard auto (JOB_COMPLETION_INDEX), one killed
// midway through its second batch and started again; the restarted worker
// asks the teacher only for what its shard has no part for, and the merged
// file equals a single-process run's byte for byte.
func TestShardWorkersKilledAndRestartedMergeToTheSingleRun(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, nil, "data", "synth", "--seed", "5", "--users", "30", "--tasks", "synth_tag", "--out", "data"); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	examples := filepath.Join(dir, "data", "synth_tag", "train.arrow")
	exs, _, err := datasets.ReadExamples(examples, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const workers, batch = 3, 4
	inShard1 := 0
	for _, e := range exs {
		if (datasets.Shard{Index: 1, Count: workers}).Contains(e.ID) {
			inShard1++
		}
	}
	if inShard1 < 2*batch {
		t.Fatalf("shard 1 holds %d examples; the test needs at least %d to kill its worker in the second batch", inShard1, 2*batch)
	}
	teacher := &shardTeacher{requests: map[string]int{}, blockKey: "w1", blockAt: batch + 2, blocked: make(chan struct{})}
	srv := httptest.NewServer(teacher)
	defer srv.Close()
	gen := func(out string) []string {
		return []string{"chains", "generate", "--examples", examples, "--out", out, "--base-url", srv.URL + "/v1", "--model", "fake",
			"--api-key-env", "TEACHER_KEY", "--batch", strconv.Itoa(batch), "--concurrency", "1", "--retries", "0"}
	}

	single := filepath.Join(dir, "single", "chains.arrow")
	if out, stderr, err := runTagpr(t, dir, []string{"TEACHER_KEY=single"}, gen(single)...); err != nil {
		t.Fatalf("single run: %v\n%s%s", err, out, stderr)
	}

	sharded := filepath.Join(dir, "run", "chains.arrow")
	procs := make([]*exec.Cmd, workers)
	outs := make([]*bytes.Buffer, workers)
	for i := range procs {
		cmd := exec.Command(tagprBin, append(gen(sharded), "--shard", "auto")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TEACHER_KEY=w"+strconv.Itoa(i), "JOB_COMPLETION_INDEX="+strconv.Itoa(i), "TAGPR_SHARD_COUNT="+strconv.Itoa(workers))
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	select {
	case <-teacher.blocked:
	case <-time.After(2 * time.Minute):
		t.Fatal("worker 1 never reached its second batch")
	}
	procs[1].Process.Kill()
	procs[1].Wait()
	for _, i := range []int{0, 2} {
		if err := procs[i].Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
		if !strings.Contains(outs[i].String(), fmt.Sprintf("shard %d/%d", i, workers)) {
			t.Fatalf("worker %d output:\n%s", i, outs[i])
		}
	}
	if _, err := os.Stat(sharded); !os.IsNotExist(err) {
		t.Fatal("a worker wrote the merged output")
	}
	if _, stderr, err := runTagpr(t, dir, nil, "chains", "merge", "--examples", examples, "--out", sharded); err == nil || !strings.Contains(stderr, "has not finished") {
		t.Fatalf("merge with worker 1 killed: err %v\n%s", err, stderr)
	}
	done, err := datasets.PartsFor(sharded, datasets.Shard{}).DoneIDs()
	if err != nil {
		t.Fatal(err)
	}
	before := 0
	for id := range done {
		if (datasets.Shard{Index: 1, Count: workers}).Contains(id) {
			before++
		}
	}
	if before != batch {
		t.Fatalf("worker 1 left %d examples in parts when killed in its second batch, want its first batch's %d", before, batch)
	}

	// Restarted, worker 1 redoes only what its shard has no part for.
	out, stderr, err := runTagpr(t, dir, []string{"TEACHER_KEY=w1-restarted", "JOB_COMPLETION_INDEX=1", "TAGPR_SHARD_COUNT=" + strconv.Itoa(workers)},
		append(gen(sharded), "--shard", "auto")...)
	if err != nil {
		t.Fatalf("restarted worker 1: %v\n%s%s", err, out, stderr)
	}
	m := regexp.MustCompile(`(\d+) examples done now, (\d+) done before`).FindStringSubmatch(out)
	if m == nil || m[1] != strconv.Itoa(inShard1-batch) || m[2] != strconv.Itoa(batch) || teacher.count("w1-restarted") != inShard1-batch {
		t.Fatalf("restarted worker: %q, %d teacher requests; want %d new examples after %d done", out, teacher.count("w1-restarted"), inShard1-batch, batch)
	}

	if out, stderr, err := runTagpr(t, dir, nil, "chains", "merge", "--examples", examples, "--out", sharded); err != nil {
		t.Fatalf("merge: %v\n%s%s", err, out, stderr)
	}
	a, _ := os.ReadFile(single)
	b, _ := os.ReadFile(sharded)
	if len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("the merged shards (%d bytes) differ from the single run (%d bytes)", len(b), len(a))
	}
	rows, _ := datasets.ReadChains(sharded, datasets.ReadOptions{})
	dups := 0
	for _, r := range rows {
		if !r.Verdicts[len(r.Verdicts)-1].Pass {
			dups++
		}
	}
	if len(rows) != len(exs) || dups == 0 {
		t.Fatalf("%d rows for %d examples, %d duplicates: want every example and some duplicates across shards", len(rows), len(exs), dups)
	}
}

// Predictions as an Indexed Job would make them: three `predict --shard
// auto` worker processes, one killed (SIGKILL) once its first batch is on
// disk and started again; the restarted worker generates only the batches
// its shard has no part for, and the merged files (the LaMP outputs JSON and
// the rows with every completion) equal a single-process run's byte for
// byte. Workers take whole batches of the one-process cut, so every batch is
// padded and generated exactly as in one process (padding moves the logits
// in their last bits; FanOut.RunBatches).
func TestShardPredictWorkersKilledAndRestartedMergeToTheSingleRun(t *testing.T) {
	dir := t.TempDir()
	questions, model := predictModelFixture(t, dir, "30", "train")
	const workers, batch, nQuestions = 3, 2, 96
	env := append(runtimeEnv(t), "TAGPR_STAGES_PREDICT_BATCH="+strconv.Itoa(batch), "TAGPR_STAGES_PREDICT_MAX_NEW_TOKENS=48", "TAGPR_LOG_FORMAT=json")
	predict := func(out string, extra ...string) []string {
		return append([]string{"predict", "--model", model, "--task", "synth_tag", "--questions", questions, "--out", out}, extra...)
	}
	workerEnv := func(i int) []string {
		return append(append([]string{}, env...), "JOB_COMPLETION_INDEX="+strconv.Itoa(i), "TAGPR_SHARD_COUNT="+strconv.Itoa(workers))
	}

	single := filepath.Join(dir, "single", "preds.json")
	if out, stderr, err := runTagpr(t, dir, env, predict(single)...); err != nil || !strings.Contains(out, fmt.Sprintf("predicted %d synth_tag questions", nQuestions)) {
		t.Fatalf("single run: %v\n%s%s", err, out, stderr)
	}

	sharded := filepath.Join(dir, "run", "preds.json")
	parts := filepath.Join(dir, "run", "preds.parquet.parts")
	shard1Parts := func() int {
		m, _ := filepath.Glob(filepath.Join(parts, fmt.Sprintf("part-1of%d-*.arrow", workers)))
		return len(m)
	}
	procs := make([]*exec.Cmd, workers)
	outs := make([]*bytes.Buffer, workers)
	for i := range procs {
		cmd := exec.Command(tagprBin, predict(sharded, "--shard", "auto")...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), workerEnv(i)...)
		outs[i] = &bytes.Buffer{}
		cmd.Stdout, cmd.Stderr = outs[i], outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs[i] = cmd
	}
	exited := make(chan error, 1)
	go func() { exited <- procs[1].Wait() }()
	deadline := time.After(2 * time.Minute)
wait:
	for shard1Parts() == 0 {
		select {
		case err := <-exited:
			t.Fatalf("worker 1 ended (%v) before it could be killed midway:\n%s", err, outs[1])
		case <-deadline:
			t.Fatal("worker 1 wrote no part in 2 minutes")
		case <-time.After(time.Millisecond):
			continue wait
		}
	}
	procs[1].Process.Kill()
	<-exited
	for _, i := range []int{0, 2} {
		if err := procs[i].Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i])
		}
		if !strings.Contains(outs[i].String(), fmt.Sprintf("shard %d/%d", i, workers)) {
			t.Fatalf("worker %d output:\n%s", i, outs[i])
		}
	}
	batches := nQuestions / batch / workers // shard 1's batches: 1, 4, 7, … of the 48
	killedAt := shard1Parts()
	t.Logf("worker 1 killed after %d of its %d batches", killedAt, batches)
	if killedAt < 1 || killedAt >= batches {
		t.Fatalf("worker 1 left %d of its %d batches when killed; the test needs it killed midway", killedAt, batches)
	}
	if _, err := os.Stat(sharded); !os.IsNotExist(err) {
		t.Fatal("a worker wrote the merged output")
	}
	merge := []string{"predict", "merge", "--task", "synth_tag", "--questions", questions, "--out", sharded}
	if _, stderr, err := runTagpr(t, dir, env, merge...); err == nil || !strings.Contains(stderr, "has not finished") {
		t.Fatalf("merge with worker 1 killed: err %v\n%s", err, stderr)
	}
	// A worker with another batch size would cut other batches: refused.
	if _, stderr, err := runTagpr(t, dir, append(workerEnv(1), "TAGPR_STAGES_PREDICT_BATCH=3"), predict(sharded, "--shard", "auto")...); err == nil ||
		!strings.Contains(stderr, `batch was "2", now "3"`) {
		t.Fatalf("a worker with another batch size: err %v\n%s", err, stderr)
	}
	// Nor may one generate in float16 beside float32 workers.
	if _, stderr, err := runTagpr(t, dir, append(workerEnv(1), "TAGPR_RUNTIME_GENERATION_DTYPE=float16"), predict(sharded, "--shard", "auto")...); err == nil ||
		!strings.Contains(stderr, `generation_dtype was "float32", now "float16"`) {
		t.Fatalf("a worker generating in float16: err %v\n%s", err, stderr)
	}

	// Restarted, worker 1 generates only the batches its shard has no part for.
	out, stderr, err := runTagpr(t, dir, workerEnv(1), predict(sharded, "--shard", "auto")...)
	if err != nil {
		t.Fatalf("restarted worker 1: %v\n%s%s", err, out, stderr)
	}
	want := fmt.Sprintf("%d questions done now, %d done before", (batches-killedAt)*batch, killedAt*batch)
	if !strings.Contains(out, want) || shard1Parts() != batches {
		t.Fatalf("restarted worker: %q, %d parts; want %q and %d parts", out, shard1Parts(), want, batches)
	}

	if out, stderr, err := runTagpr(t, dir, env, merge...); err != nil || !strings.Contains(out, fmt.Sprintf("holds %d synth_tag predictions", nQuestions)) {
		t.Fatalf("merge: %v\n%s%s", err, out, stderr)
	}
	for _, f := range []string{"preds.json", "preds.parquet"} {
		a, _ := os.ReadFile(filepath.Join(dir, "single", f))
		b, _ := os.ReadFile(filepath.Join(dir, "run", f))
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Errorf("%s: the merged shards (%d bytes) differ from the single run (%d bytes)", f, len(b), len(a))
		}
	}
	if fileExists(parts) {
		t.Errorf("%s is still there after the merge", parts)
	}
	preds, err := datasets.ReadPredictions(filepath.Join(dir, "run", "preds.parquet"), datasets.ReadOptions{})
	if err != nil || len(preds) != nQuestions || len(preds[0].Completion) == 0 {
		t.Fatalf("merged rows: %d, %v", len(preds), err)
	}
	// Eval reads the merged file, as it reads any predictions file.
	golds := filepath.Join(dir, "data", "synth_tag", "train_outputs.json")
	if out, stderr, err := runTagpr(t, dir, nil, "eval", "--task", "synth_tag", "--golds", golds, "--predictions", sharded); err != nil || !strings.Contains(out, "| synth_tag | train | 96 |") {
		t.Errorf("eval of the merged predictions: %v\n%s%s", err, out, stderr)
	}
}

// data shard marks each output with its shard; data merge refuses a split
// with a shard missing (it merged 2 of 3 with exit 0), unless --partial,
// takes Arrow and Parquet shards together, and its output is no shard.
func TestDataShardAndMerge(t *testing.T) {
	dir := t.TempDir()
	if _, stderr, err := runTagpr(t, dir, nil, "data", "synth", "--seed", "5", "--users", "30", "--tasks", "synth_tag", "--out", "data"); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	in := filepath.Join(dir, "data", "synth_tag", "train.arrow")
	parts := []string{filepath.Join(dir, "s0.arrow"), filepath.Join(dir, "s1.parquet"), filepath.Join(dir, "s2.arrow")}
	for i, p := range parts {
		if _, stderr, err := runTagpr(t, dir, nil, "data", "shard", "--in", in, "--shard", fmt.Sprintf("%d/3", i), "--out", p); err != nil {
			t.Fatalf("data shard %d/3: %v\n%s", i, err, stderr)
		}
	}
	_, stderr, err := runTagpr(t, dir, nil, "data", "merge", "--out", filepath.Join(dir, "two.arrow"), parts[0], parts[2])
	if err == nil || !strings.Contains(stderr, "shard 1/3 of the split is not among the inputs") || !strings.Contains(stderr, "--partial") {
		t.Fatalf("merge of 2 of 3 shards: %v\n%s", err, stderr)
	}
	if _, stderr, err := runTagpr(t, dir, nil, "data", "merge", "--partial", "--out", filepath.Join(dir, "two.arrow"), parts[0], parts[2]); err != nil {
		t.Fatalf("merge --partial: %v\n%s", err, stderr)
	}
	all := filepath.Join(dir, "all.parquet")
	out, stderr, err := runTagpr(t, dir, nil, append([]string{"data", "merge", "--out", all}, parts...)...)
	if err != nil {
		t.Fatalf("merge of the 3 shards: %v\n%s", err, stderr)
	}
	// A shard beside a file that is no shard, or a shard given twice, is refused.
	for _, c := range []struct {
		files []string
		want  string
	}{{[]string{parts[0], in}, "is not marked as one"}, {[]string{parts[0], parts[0], parts[1], parts[2]}, "are both shard 0/3"}} {
		if _, stderr, err := runTagpr(t, dir, nil, append([]string{"data", "merge", "--out", filepath.Join(dir, "bad.arrow")}, c.files...)...); err == nil || !strings.Contains(stderr, c.want) {
			t.Errorf("merge %v: %v\n%s", c.files, err, stderr)
		}
	}
	r, err := datasets.OpenReader(all, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, marked := datasets.ShardOf(r.Schema()); marked {
		t.Error("the merged file is marked as a shard")
	}
	w, err := datasets.OpenReader(in, datasets.ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var n, want int64
	for r.Next() {
		n += r.Batch().NumRows()
	}
	for w.Next() {
		want += w.Batch().NumRows()
	}
	if n != want {
		t.Errorf("merged %d rows of %d (%s)", n, want, out)
	}
}

// A data synth whose writing fails part way (a file-size limit here, as a
// full disk would) leaves no half-made --out: not one to be taken as the
// whole benchmark, nor one the rerun refuses as not empty.
func TestDataSynthFailedWriteLeavesNoFolder(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", `ulimit -f 64; exec "$0" data synth --seed 5 --users 60 --out data`, tagprBin)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "file too large") {
		t.Fatalf("data synth under a 32 KiB file limit: %v\n%s", err, out)
	}
	for _, p := range []string{"data", "data.tmp"} {
		if _, err := os.Stat(filepath.Join(dir, p)); !os.IsNotExist(err) {
			t.Errorf("%s is there after a failed write (%v)", p, err)
		}
	}
	if _, stderr, err := runTagpr(t, dir, nil, "data", "synth", "--seed", "5", "--users", "60", "--out", "data"); err != nil {
		t.Fatalf("rerun: %v\n%s", err, stderr)
	}
}

// predictModelFixture writes synthetic synth_tag data for users into
// dir/data and returns the split's questions file and the PyTorch-exported
// chat model predict --model runs.
func predictModelFixture(t *testing.T, dir, users, split string) (questions, model string) {
	t.Helper()
	if _, stderr, err := runTagpr(t, dir, nil, "data", "synth", "--seed", "5", "--users", users, "--tasks", "synth_tag", "--out", "data"); err != nil {
		t.Fatalf("data synth: %v\n%s", err, stderr)
	}
	model, _ = filepath.Abs(filepath.Join("..", "..", "onnx", "testdata", "pytorch", "qwen2-chat"))
	return filepath.Join(dir, "data", "synth_tag", split+"_questions.json"), model
}
