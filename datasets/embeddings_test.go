package datasets

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestEmbeddingsRoundTrip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "emb.arrow")
	rows := []TextEmbedding{
		{TextSHA256: strings.Repeat("ab", 32), Vector: []float32{1, -2.5, 3}},
		{TextSHA256: strings.Repeat("0f", 32), Vector: []float32{0, 0.25, 1e-9}},
	}
	if _, err := CreateEmbeddings(path, ""); err == nil {
		t.Fatal("created an embeddings file without an encoder hash")
	}
	w, err := CreateEmbeddings(path, "enc123")
	if err != nil {
		t.Fatal(err)
	}
	for i := range rows {
		if err := w.Write(&rows[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	got, enc, err := ReadEmbeddings(path)
	if err != nil || enc != "enc123" || !reflect.DeepEqual(got, rows) {
		t.Fatalf("read back %+v, encoder %q, %v", got, enc, err)
	}
	// Another kind of file, or a bad hash, is refused with the file named.
	preds := filepath.Join(dir, "preds.arrow")
	pw, err := CreatePredictions(preds)
	if err != nil {
		t.Fatal(err)
	}
	pw.Write(&Prediction{ID: "1", Prediction: "x"})
	pw.Commit()
	if _, _, err := ReadEmbeddings(preds); err == nil || !strings.Contains(err.Error(), "preds.arrow") {
		t.Fatalf("read a prediction file as embeddings: %v", err)
	}
	bad := filepath.Join(dir, "bad.arrow")
	w, _ = CreateEmbeddings(bad, "enc")
	w.Write(&TextEmbedding{TextSHA256: "short", Vector: []float32{1}})
	w.Commit()
	if _, _, err := ReadEmbeddings(bad); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
		t.Fatalf("short hash: %v", err)
	}
}
