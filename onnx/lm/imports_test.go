package lm_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The package's import rule (doc.go): lm imports only onnx/ort, onnx/ir,
// onnx/onnxpb and onnx/lock from tagpr.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{join .Imports "\n"}}`, "github.com/tagpr/tagpr/onnx/lm").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	allowed := map[string]bool{"onnx/ort": true, "onnx/ir": true, "onnx/onnxpb": true, "onnx/lock": true}
	for _, imp := range strings.Fields(string(out)) {
		rel, ok := strings.CutPrefix(imp, "github.com/tagpr/tagpr/")
		if ok && !allowed[rel] {
			t.Errorf("lm imports %s; doc.go allows only onnx/ort, onnx/ir, onnx/onnxpb and onnx/lock", rel)
		}
	}
}
