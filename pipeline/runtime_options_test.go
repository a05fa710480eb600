package pipeline

import (
	"context"
	"sort"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/ort"
)

// Every session the recipe creates — generation and its decode heads, the
// SFT and RL training graphs and their shape probes, the KL reference, PRMU
// training and scoring, evaluation — carries the runtime the process
// declared. With a runtime declared, ort refuses any session created
// without its options, so a stage that drops them fails this run.
func TestEverySessionCarriesTheRuntimeOptions(t *testing.T) {
	if err := ort.Start(ort.Runtime{Provider: "cpu", Threads: 2}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ort.Start(ort.Runtime{}) })
	cfg := tinyDemo(t.TempDir())
	cfg.SFT.Steps = 2
	for i := range cfg.RL {
		cfg.RL[i].Steps = 1
	}
	cfg.Session = ort.Declared().Options()
	before := len(ort.Sessions())
	if _, err := RunDemo(context.Background(), cfg, Hooks{}); err != nil {
		t.Fatalf("demo under a declared runtime: %v", err)
	}
	kinds := map[string]bool{}
	for _, s := range ort.Sessions()[before:] {
		if s.Options.Provider != "cpu" {
			t.Errorf("session %q created with provider %q", s.Label, s.Options.Provider)
		}
		// The runtime's threads, or the one thread the demo's PRMU (training
		// and scoring) deliberately uses between generations; never ORT's
		// default, which would mean the options were rebuilt from scratch.
		if n := s.Options.IntraOpThreads; n != 2 && n != 1 {
			t.Errorf("session %q has %d intra-op threads, want the runtime's 2 (or PRMU's 1)", s.Label, n)
		}
		for _, k := range []string{"training graph", "specialization probe", "token scorer", "prmu", "decode head", "rl policy", "model.onnx"} {
			if strings.Contains(s.Label, k) {
				kinds[k] = true
			}
		}
	}
	var missing []string
	for _, k := range []string{"training graph", "specialization probe", "token scorer", "prmu", "decode head", "rl policy", "model.onnx"} {
		if !kinds[k] {
			missing = append(missing, k)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("no session of kind %v was created: the test no longer covers them (labels changed?)", missing)
	}
}
