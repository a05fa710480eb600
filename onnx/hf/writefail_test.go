package hf

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/onnx/ir"
)

// block makes name in dir a non-empty folder, so that writing the file
// fails as a full disk would, after the files written before it.
func block(t *testing.T, dir, name string) func() {
	t.Helper()
	p := filepath.Join(dir, name)
	os.RemoveAll(p)
	if err := os.MkdirAll(filepath.Join(p, "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	return func() { os.RemoveAll(p) }
}

// An import that fails part way (over an earlier import) leaves no
// model.onnx, the file whose presence makes the folder a model: not the
// new one without its side files, not the old one beside the new
// weights. Once the cause is gone, the same import succeeds.
func TestImportFailureLeavesNoModel(t *testing.T) {
	src := filepath.Join(fixtures, "qwen2")
	out := t.TempDir()
	opts := ImportOptions{ExternalData: "always"}
	if _, err := Import(src, out, opts); err != nil {
		t.Fatal(err)
	}
	unblock := block(t, out, "generation_config.json")
	if _, err := Import(src, out, opts); err == nil {
		t.Fatal("import with generation_config.json unwritable: no error")
	}
	if _, err := os.Stat(filepath.Join(out, "model.onnx")); !os.IsNotExist(err) {
		t.Errorf("model.onnx is there after a failed import (%v): a reader takes the folder as a whole model", err)
	}
	unblock()
	if _, err := Import(src, out, opts); err != nil {
		t.Fatal(err)
	}
	if _, err := ir.Load(filepath.Join(out, "model.onnx")); err != nil {
		t.Fatal(err)
	}
}

// An export that fails part way leaves no model.safetensors, so the
// folder is neither taken for a checkpoint nor refused as one by the
// rerun; with Force over an earlier export, the old weights do not stay
// beside the new config.json.
func TestExportFailureLeavesNoWeights(t *testing.T) {
	onnxDir, m := importFixture(t, "qwen2")
	for _, force := range []bool{false, true} {
		out := t.TempDir()
		if force {
			if _, err := Export(m, out, ExportOptions{From: onnxDir}); err != nil {
				t.Fatal(err)
			}
		}
		unblock := block(t, out, "generation_config.json")
		if _, err := Export(m, out, ExportOptions{From: onnxDir, Force: force}); err == nil {
			t.Fatal("export with generation_config.json unwritable: no error")
		}
		if _, err := os.Stat(filepath.Join(out, "model.safetensors")); !os.IsNotExist(err) {
			t.Errorf("force %v: model.safetensors is there after a failed export (%v)", force, err)
		}
		unblock()
		if _, err := Export(m, out, ExportOptions{From: onnxDir}); err != nil {
			t.Fatalf("force %v: the rerun: %v", force, err)
		}
		if _, err := Import(out, t.TempDir(), ImportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}
