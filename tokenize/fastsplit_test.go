package tokenize

import (
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

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

// TestRegexFoldsLongS: Hugging Face tokenizers (Oniguruma) and the JS
// reference fold U+017F ſ to s under (?i), so "'ſ" is a contraction; regexp2
// alone does not (FuzzFastSplit's first finding, llama3 on "'ſA¡00": the
// scanner was right). Spans are HF's, from tokenizers 0.22.2's
// pre_tokenize_str on the pinned tokenizers.
func TestRegexFoldsLongS(t *testing.T) {
	const gpt4o = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	cases := []struct {
		pattern, text string
		runes         [][2]int // HF's spans, in runes
	}{
		{llama3Pattern, "'ſA¡00", [][2]int{{0, 2}, {2, 3}, {3, 4}, {4, 6}}},
		{qwen2Pattern, "'ſA¡00", [][2]int{{0, 2}, {2, 3}, {3, 4}, {4, 5}, {5, 6}}},
		{llama3Pattern, "itſ'ſA 'Ssx", [][2]int{{0, 3}, {3, 5}, {5, 6}, {6, 8}, {8, 11}}},
		{gpt4o, "itſ'ſA 'Ssx", [][2]int{{0, 5}, {5, 6}, {6, 8}, {8, 11}}},
		{gpt4o, "Kelvin'K µ", [][2]int{{0, 6}, {6, 8}, {8, 10}}},
	}
	for _, c := range cases {
		re, err := compileRegex(c.pattern)
		if err != nil {
			t.Fatal(err)
		}
		var got [][2]int
		for _, sp := range splits(regexMatcher{re}, c.text) {
			got = append(got, [2]int{utf8.RuneCountInString(c.text[:sp[0]]), utf8.RuneCountInString(c.text[:sp[1]])})
		}
		if !reflect.DeepEqual(got, c.runes) {
			t.Errorf("%.20s… on %q: regexp2 spans %v, Hugging Face %v", c.pattern, c.text, got, c.runes)
		}
		if fast, ok := knownPattern(c.pattern); ok {
			if f, r := splits(fast, c.text), splits(regexMatcher{re}, c.text); !reflect.DeepEqual(f, r) {
				t.Errorf("%q: scanner %v, regexp2 %v", c.text, f, r)
			}
		}
	}
	for in, want := range map[string]string{
		`(?i:'s|'t)|s`:       `(?i:'[sſ]|'t)|s`,
		`(?i)S[s]\s(?-i:s)s`: `(?i)[Sſ][s]\s(?-i:s)[sſ]`,
		`(?<s>x)(?i:\p{Ls})`: `(?<s>x)(?i:\p{Ls})`,
		`a(?=s)(?i)(k)`:      `a(?=s)(?i)(k)`,
	} {
		if got := foldCaseLiterals(in); got != want {
			t.Errorf("foldCaseLiterals(%q) = %q, want %q", in, got, want)
		}
	}
}
