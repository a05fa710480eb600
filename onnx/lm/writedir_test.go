package lm

import (
	"os"
	"path/filepath"
	"testing"
)

// A WriteModelDir whose writing fails part way (generation_config.json's
// path is a folder here; a full disk does the same) leaves no model.onnx,
// the file that makes the folder a model (and that `model init` is
// refused over), and the same call then succeeds.
func TestWriteModelDirFailedWriteLeavesNoModel(t *testing.T) {
	cfg := Config{Arch: Llama, Layers: 1, DModel: 16, Heads: 2, KVHeads: 1, Vocab: 50, MaxPositions: 32, Seed: 1}
	dir := t.TempDir()
	if _, err := WriteModelDir(cfg, dir, false); err != nil { // an earlier model
		t.Fatal(err)
	}
	blocker := filepath.Join(dir, "generation_config.json")
	os.Remove(blocker)
	if err := os.MkdirAll(filepath.Join(blocker, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteModelDir(cfg, dir, false); err == nil {
		t.Fatal("generation_config.json unwritable: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "model.onnx")); !os.IsNotExist(err) {
		t.Errorf("model.onnx is there after a failed write (%v)", err)
	}
	os.RemoveAll(blocker)
	if _, err := WriteModelDir(cfg, dir, false); err != nil {
		t.Fatal(err)
	}
}
