package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

func TestReportCollectsEveryFigure(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "raw")
	raw := "goos: linux\npkg: github.com/tagpr/tagpr/onnx/ir\n" +
		"BenchmarkSessionCreate-2   \t      20\t  24683760 ns/op\t    259289 ns/create\t         1.108 x_vs_direct\n" +
		"bench: lm.model_params 10522880 params\n" +
		"bench: broken line\n" +
		"note: no PyTorch peer\n" +
		"PASS\n"
	if err := os.WriteFile(in, []byte(raw), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "bench.json")
	if err := run(in, out); err != nil {
		t.Fatal(err)
	}
	var figs []figure
	b, _ := os.ReadFile(out)
	if err := json.Unmarshal(b, &figs); err != nil {
		t.Fatal(err)
	}
	want := []figure{{"ir.SessionCreate", 24683760, "ns/op"}, {"ir.SessionCreate", 259289, "ns/create"},
		{"ir.SessionCreate", 1.108, "x_vs_direct"}, {"lm.model_params", 10522880, "params"}}
	if len(figs) != len(want) {
		t.Fatalf("figures %+v, want %+v", figs, want)
	}
	for i := range want {
		if figs[i] != want[i] {
			t.Fatalf("figure %d = %+v, want %+v", i, figs[i], want[i])
		}
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("PASS\n"), 0o644)
	if err := run(empty, filepath.Join(dir, "x.json")); err == nil {
		t.Fatal("a run without figures was accepted")
	}
}
