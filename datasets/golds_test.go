package datasets

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
)

// A gold eval would refuse (a LaMP-3 rating "seven", a LaMP-1 label "[3]")
// is refused by the import itself, naming the outputs
// file and the id, and nothing is written; data import-lamp once wrote it
// with exit 0.
func TestImportRefusesBadGolds(t *testing.T) {
	tmp := t.TempDir()
	r3, _ := ParseTask("3")
	q := filepath.Join("testdata", "lamp", "user", "LaMP_3", "dev_questions.json")
	outs := writeFile(t, filepath.Join(tmp, "dev_outputs.json"),
		`{"task": "LaMP_3", "golds": [{"id": "100", "output": "1"}, {"id": "101", "output": "seven"}, {"id": "102", "output": "3"}]}`)
	out := filepath.Join(tmp, "dev.arrow")
	_, err := ImportLaMP(ImportOptions{Task: r3, Questions: q, Outputs: outs, Split: "dev", Out: out})
	if err == nil || !strings.Contains(err.Error(), outs) || !strings.Contains(err.Error(), `gold "seven" of 101 is not a number`) {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s written: %v", out, err)
	}

	l1, _ := ParseTask("1")
	outs = writeFile(t, filepath.Join(tmp, "l1_outputs.json"),
		`{"task": "LaMP_1", "golds": [{"id": "100", "output": "[1]"}, {"id": "101", "output": "[3]"}, {"id": "102", "output": "[1]"}]}`)
	_, err = ImportLaMP(ImportOptions{Task: l1, Questions: filepath.Join("testdata", "lamp", "user", "LaMP_1", "dev_questions.json"),
		Outputs: outs, Split: "dev", Out: out})
	if err == nil || !strings.Contains(err.Error(), outs) || !strings.Contains(err.Error(), `gold "[3]" of 101 is not one of the labels`) {
		t.Fatalf("LaMP-1 gold [3]: got %v", err)
	}

	// Good golds import as before.
	dir := filepath.Join("testdata", "lamp", "user", "LaMP_3")
	if _, err := ImportLaMP(ImportOptions{Task: r3, Questions: filepath.Join(dir, "dev_questions.json"),
		Outputs: filepath.Join(dir, "dev_outputs.json"), Split: "dev", Out: out}); err != nil {
		t.Fatal(err)
	}
}

// decimalValue relies on Go's Nd table being runs of ten digits from 0.
func TestDecimalValueOfEveryDigit(t *testing.T) {
	check := func(lo, hi, stride uint32) {
		if stride != 1 || (hi-lo+1)%10 != 0 {
			t.Fatalf("Nd range %#x–%#x (stride %d) is not whole runs of ten", lo, hi, stride)
		}
		for r := lo; r <= hi; r++ {
			if got := decimalValue(rune(r)); got != byte((r-lo)%10) {
				t.Fatalf("decimalValue(%#x) = %d", r, got)
			}
		}
	}
	for _, rg := range unicode.Nd.R16 {
		check(uint32(rg.Lo), uint32(rg.Hi), uint32(rg.Stride))
	}
	for _, rg := range unicode.Nd.R32 {
		check(rg.Lo, rg.Hi, rg.Stride)
	}
	if decimalValue('٧') != 7 || decimalValue('９') != 9 {
		t.Fatal("Arabic-Indic 7 or full-width 9 misread")
	}
}

// StripPython trims what Python's str.strip() trims (LaMP's evaluator strips
// answers and golds): the 29 code points CPython 3 counts as white space,
// listed here from `[c for c in range(0x110000) if chr(c).isspace()]`, and
// nothing else.
func TestStripPythonIsPythonsStrip(t *testing.T) {
	python := []rune{0x9, 0xa, 0xb, 0xc, 0xd, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002,
		0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000}
	space := map[rune]bool{}
	for _, r := range python {
		space[r] = true
	}
	for r := rune(0); r < 0x110000; r++ {
		if r >= 0xd800 && r < 0xe000 {
			continue // surrogates: not in a Go string
		}
		s := string(r) + "x" + string(r)
		want := s
		if space[r] {
			want = "x"
		}
		if got := StripPython(s); got != want {
			t.Fatalf("StripPython(%q) = %q, want %q (Python's strip)", s, got, want)
		}
	}
}
