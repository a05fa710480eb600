package tokenize_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The package's import rule (doc.go): tokenize must not depend on onnx/,
// rewardmodel/ or pipeline/. Its tests and the internal recorder may use
// onnx/lock to find pinned files.
func TestImportRules(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", "github.com/tagpr/tagpr/tokenize").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/onnx", "/rewardmodel", "/pipeline"} {
			if strings.HasPrefix(dep, "github.com/tagpr/tagpr"+banned) {
				t.Errorf("tokenize depends on %s", dep)
			}
		}
	}
}
