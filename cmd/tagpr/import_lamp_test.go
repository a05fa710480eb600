//go:build unix

package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Ctrl-C stops data import-lamp between questions (a 1 GB LaMP train file
// takes a while): exit 130, a message that a rerun starts over, and no output
// file, whole or partial. Before, the import ran on to the end of the file
// and exited 0. The questions come through a FIFO, so the import is still
// reading when the signal arrives.
func TestImportLaMPStopsAtCtrlC(t *testing.T) {
	dir := t.TempDir()
	q, out := filepath.Join(dir, "test_questions.json"), filepath.Join(dir, "out", "test.arrow")
	os.Mkdir(filepath.Dir(out), 0o755)
	if err := syscall.Mkfifo(q, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(tagprBin, "--log-format", "json", "data", "import-lamp", "--task", "5", "--split", "test", "--questions", q, "--out", out)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(q, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	question := func(i int) string {
		return fmt.Sprintf(`{"id":"q%d","input":"Generate a title for the following abstract of a paper: x","profile":[{"id":"p%d","title":"t","abstract":"a"}]}`, i, i)
	}
	fmt.Fprint(f, "["+question(0)+",")
	sc := bufio.NewScanner(stderr)
	var lines []string
	wait := func(s string) {
		for sc.Scan() {
			lines = append(lines, sc.Text())
			if strings.Contains(sc.Text(), s) {
				return
			}
		}
		t.Fatalf("import-lamp never printed %q:\n%s", s, strings.Join(lines, "\n"))
	}
	wait(`"msg":"import-lamp MB"`) // the first question is read
	cmd.Process.Signal(os.Interrupt)
	wait("stopping cleanly")
	fmt.Fprint(f, question(1)+"]")
	f.Close()
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	err = cmd.Wait()
	all := strings.Join(lines, "\n")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(all, "starts over") {
		t.Fatalf("interrupted import-lamp: %v\n%s\nwant exit 130 and a message that a rerun starts over", err, all)
	}
	if ents, _ := os.ReadDir(filepath.Dir(out)); len(ents) != 0 {
		t.Fatalf("interrupted import-lamp left %v in %s", ents, filepath.Dir(out))
	}
}
