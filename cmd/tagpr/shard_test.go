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
