package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportAndProbeOutKeptUnlessForce: eval --out and model probe --out
// keep the files already in DIR (README: "Existing output files are kept
// unless --force"), naming the file; --force writes them again.
func TestReportAndProbeOutKeptUnlessForce(t *testing.T) {
	dir := t.TempDir()
	env := runtimeEnv(t)
	kept := func(path string) {
		t.Helper()
		if err := os.WriteFile(path, []byte("kept\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what, path string, force bool, args ...string) {
		t.Helper()
		_, stderr, err := runTagpr(t, dir, env, args...)
		b, _ := os.ReadFile(path)
		if !force {
			if err == nil || !strings.Contains(stderr, path+" exists; pass --force") || string(b) != "kept\n" {
				t.Errorf("%s into a folder that has %s: err %v, file now %.40q\n%s", what, path, err, b, stderr)
			}
			return
		}
		if err != nil || string(b) == "kept\n" {
			t.Errorf("%s --force: err %v, file still %.40q\n%s", what, err, b, stderr)
		}
	}

	golds, _ := filepath.Abs("../../datasets/testdata/lamp/user/LaMP_3/dev_outputs.json")
	preds := filepath.Join(dir, "p.json")
	os.WriteFile(preds, []byte(`{"task":"LaMP_3","golds":[{"id":"100","output":"1"},{"id":"101","output":"2"},{"id":"102","output":"4"}]}`), 0o644)
	rep := filepath.Join(dir, "rep")
	os.MkdirAll(rep, 0o755)
	kept(filepath.Join(rep, "metrics.json"))
	eval := []string{"eval", "--task", "3", "--golds", golds, "--predictions", preds, "--out", rep}
	check("eval --out", filepath.Join(rep, "metrics.json"), false, eval...)
	check("eval --out", filepath.Join(rep, "metrics.json"), true, append(eval, "--force")...)

	model := filepath.Join(dir, "m")
	if _, stderr, err := runTagpr(t, dir, nil, "model", "init", "--arch", "llama", "--layers", "1", "--d-model", "32", "--heads", "2",
		"--kv-heads", "1", "--vocab", "64", "--max-positions", "64", "--seed", "1", "--out", model); err != nil {
		t.Fatalf("model init: %v\n%s", err, stderr)
	}
	pr := filepath.Join(dir, "probe")
	os.MkdirAll(pr, 0o755)
	kept(filepath.Join(pr, "probe.json"))
	probe := []string{"model", "probe", model, "--out", pr, "--gen-batches", "1", "--new-tokens", "2", "--prompt-len", "4", "--train-steps", "-1"}
	check("model probe --out", filepath.Join(pr, "probe.json"), false, probe...)
	if fileExists(filepath.Join(pr, "tensors.safetensors")) {
		t.Errorf("the refused probe wrote tensors.safetensors")
	}
	check("model probe --out", filepath.Join(pr, "probe.json"), true, append(probe, "--force")...)
}
