package train

import (
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// The memory a run may plan for is what the machine has free plus what this
// process holds, within a cgroup's limit: MemTotal alone let a run start
// that could never fit while other jobs held memory.
func TestMemoryForCountsWhatOthersHold(t *testing.T) {
	const gib = 1 << 30
	meminfo := []byte("MemTotal:       24641536 kB\nMemFree:         1048576 kB\nMemAvailable:   10485760 kB\nBuffers:           1024 kB\n")
	for _, c := range []struct {
		name        string
		cgroup, rss int64
		want        int64
	}{
		{"others hold 13.5 GiB", 0, 1 * gib, 11 * gib},
		{"a cgroup below", 4 * gib, 1 * gib, 4 * gib},
		{"never past MemTotal", 0, 20 * gib, 24641536 << 10},
	} {
		got, err := memoryFor(meminfo, c.cgroup, c.rss)
		if err != nil || got != c.want {
			t.Errorf("%s: %d (%v), want %d", c.name, got, err, c.want)
		}
	}
	// A kernel without MemAvailable: MemTotal, as before.
	if got, err := memoryFor([]byte("MemTotal: 1024 kB\n"), 0, 0); err != nil || got != 1<<20 {
		t.Errorf("without MemAvailable: %d %v", got, err)
	}
	if _, err := memoryFor([]byte("garbage"), 0, 0); err == nil || !strings.Contains(err.Error(), "MemTotal") {
		t.Errorf("no MemTotal: %v", err)
	}
	if got, err := MachineMemory(); err != nil || got <= selfRSS() {
		t.Errorf("MachineMemory %d (%v): want more than this process's %d resident bytes", got, err, selfRSS())
	}
}

// TestReleaseInitial: with ReleaseInitial a trainer takes the trainable
// weights out of the graph once it holds copies of them (frozen ones stay:
// the trainer reads those in place), and the estimate counts them once.
func TestReleaseInitial(t *testing.T) {
	m, err := lm.Build(tinyConfig(lm.Llama, "float32"))
	if err != nil {
		t.Fatal(err)
	}
	tg, _, err := BuildLMTraining(m, LMTraining{Batch: 2, SeqLen: 8, Trainable: []string{"model.layers.0.*"}, FrozenAsInputs: true})
	if err != nil {
		t.Fatal(err)
	}
	kept := EstimateMemory(tg)
	var params int64
	for _, p := range tg.Params {
		params += initBytes(tg.Initial[p])
	}
	tg.ReleaseInitial = true
	released := EstimateMemory(tg)
	if params == 0 || kept.Weights-released.Weights != params {
		t.Fatalf("estimate's weights %d kept, %d released: want %d (the trainable weights) less", kept.Weights, released.Weights, params)
	}
	tr, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	for _, p := range tg.Params {
		if tg.Initial[p] != nil {
			t.Errorf("trainable %q still in the graph's initial values", p)
		}
	}
	if len(tg.Frozen) == 0 {
		t.Fatal("no frozen weights in the test graph")
	}
	for _, f := range tg.Frozen {
		if tg.Initial[f] == nil {
			t.Errorf("frozen %q left the graph's initial values: the trainer reads it there", f)
		}
	}
	if _, err := NewTrainer(tg, TrainerOptions{Schedule: Schedule{Peak: 1e-3, Total: 1}}); err == nil || !strings.Contains(err.Error(), "no initial value") {
		t.Errorf("a second trainer on a released graph: %v", err)
	}
}
