package tokenize

import (
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/tokenize/internal/corpus"
)

func splits(m matcher, s string) [][2]int {
	var out [][2]int
	m.find(s, func(a, b int) { out = append(out, [2]int{a, b}) })
	return out
}

var fastPatterns = map[string]string{"gpt2": gpt2Pattern, "llama3": llama3Pattern, "qwen2": qwen2Pattern}

// The hand-written scanners must cut text exactly where regexp2 cuts it
// with the original patterns.
func TestFastSplitMatchesRegexp2(t *testing.T) {
	docs := corpus.Docs(12, 8<<10)
	docs = append(docs, "", " ", "  ", "a", "'s", "'S", "'ll've", "it's", "IT'S 'ſ", "\r\n\r\n", " \n \n ", "x  ",
		"  x", "\t\tx", "12345678", " 123", "a\u3000\u3000b", "¡¿", " !!\n\n\nx", "é\u0301\u0301", "\u0085x\u00a0 y")
	for name, pat := range fastPatterns {
		fast, ok := knownPattern(pat)
		if !ok {
			t.Fatalf("%s pattern not recognised", name)
		}
		re, err := compileRegex(pat)
		if err != nil {
			t.Fatal(err)
		}
		slow := regexMatcher{re}
		for i, d := range docs {
			if got, want := splits(fast, d), splits(slow, d); !reflect.DeepEqual(got, want) {
				t.Errorf("%s doc %d: %s", name, i, firstSplitDiff(d, got, want))
			}
		}
	}
}

func firstSplitDiff(s string, got, want [][2]int) string {
	for k := 0; k < len(got) && k < len(want); k++ {
		if got[k] != want[k] {
			return "fast " + quoteSpan(s, got[k]) + " vs regexp2 " + quoteSpan(s, want[k])
		}
	}
	return "different number of pieces"
}

func quoteSpan(s string, sp [2]int) string {
	return strings.ReplaceAll(`"`+s[sp[0]:sp[1]]+`"`, "\n", `\n`)
}

func FuzzFastSplit(f *testing.F) {
	for _, s := range []string{"Hello world's 123", "  \n\t x", "'LL 'll 'ſ ¡!!", "東京\r\n\r\n  ", "👨‍👩‍👧 a1b22c333"} {
		f.Add(s)
	}
	res := map[string]matcher{}
	for name, pat := range fastPatterns {
		re, err := compileRegex(pat)
		if err != nil {
			f.Fatal(err)
		}
		res[name] = regexMatcher{re}
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !isValidUTF8(s) {
			return // regexp2 works on runes; invalid bytes are compared elsewhere
		}
		for name, pat := range fastPatterns {
			fast, _ := knownPattern(pat)
			if got, want := splits(fast, s), splits(res[name], s); !reflect.DeepEqual(got, want) {
				t.Errorf("%s on %q: %s", name, s, firstSplitDiff(s, got, want))
			}
		}
	})
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }
