//go:build unix

package datasets

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
)

// ImportLaMP streams: what it holds while it reads a questions file is one
// question and one record batch, not the questions already written. The file
// is a FIFO the test writes ~64 MB of questions into; once they are written
// (read by the import) the live heap must be well under that.
func TestImportLaMPHoldsNoReadQuestions(t *testing.T) {
	dir := t.TempDir()
	q := filepath.Join(dir, "train_questions.json")
	if err := syscall.Mkfifo(q, 0o600); err != nil {
		t.Fatal(err)
	}
	task, err := ParseTask("5")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ImportLaMP(ImportOptions{Task: task, Questions: q, Split: "test", Out: filepath.Join(dir, "out.arrow"), BatchRows: 1})
		done <- err
	}()
	f, err := os.OpenFile(q, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	abstract := strings.Repeat("word ", 100_000) // 500 kB per question
	const questions = 128
	w.WriteString("[")
	for i := range questions {
		if i > 0 {
			w.WriteString(",")
		}
		fmt.Fprintf(w, `{"id":"q%d","input":"Generate a title for the following abstract of a paper: x","profile":[{"id":"p%d","title":"t","abstract":"%s"}]}`, i, i, abstract)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	w.WriteString("]")
	w.Flush()
	f.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	written := uint64(questions * len(abstract))
	if ms.HeapAlloc > written/3 {
		t.Fatalf("after %d MB of questions were read, %d MB of heap is live (want about one question and one batch)", written>>20, ms.HeapAlloc>>20)
	}
}
