package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// model probe refuses out-of-range sizes and step counts, naming the flag,
// before any work (--train-steps -2 once ran, and 0 silently became 3);
// --train-steps -1 (no training) no longer reports "0 params, loss 0" for a
// model that has parameters.
func TestModelProbeFlagsChecked(t *testing.T) {
	dir := t.TempDir()
	model := filepath.Join(dir, "m")
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--arch", "llama", "--layers", "1", "--d-model", "32", "--heads", "2",
		"--kv-heads", "1", "--vocab", "64", "--max-positions", "64", "--seed", "1", "--out", model); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	env := runtimeEnv(t)
	pr := filepath.Join(dir, "probe")
	base := []string{"model", "probe", model, "--out", pr, "--gen-batches", "1", "--new-tokens", "2", "--prompt-len", "4"}
	for _, bad := range [][2]string{{"--train-steps", "-2"}, {"--train-steps", "0"}, {"--new-tokens", "0"}, {"--prompt-len", "-1"},
		{"--train-batch", "0"}, {"--seq-len", "1"}} {
		_, stderr, err := runTagpr(t, dir, env, append(base, bad[0], bad[1])...)
		if err == nil || !strings.Contains(stderr, "model probe: "+bad[0]+" "+bad[1]+": want") {
			t.Errorf("%s %s: err %v, stderr %q", bad[0], bad[1], err, stderr)
		}
		if fileExists(filepath.Join(pr, "probe.json")) {
			t.Fatalf("%s %s: a refused probe wrote probe.json", bad[0], bad[1])
		}
	}
	out, stderr, err := runTagpr(t, dir, env, append(base, "--train-steps", "-1")...)
	if err != nil || strings.Contains(out, "0 params") || !strings.Contains(out, "generation only") {
		t.Fatalf("--train-steps -1: err %v, stdout %q\n%s", err, out, stderr)
	}
}
