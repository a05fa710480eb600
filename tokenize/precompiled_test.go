package tokenize_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tagpr/tagpr/tokenize"
)

// TestPrecompiledMatchesHF holds the Precompiled normalizer (alone, and as
// the whole Sequence[Precompiled, Strip, Replace] of the XLM-R-shaped
// fixture) to Hugging Face tokenizers' output and alignment, recorded by
// scripts/tokenize/hf_normalizer.py into testdata/normalizer_hf.json:
// hf_edge.py's adversarial texts, texts aimed at the grapheme rules and a
// sample of the parity corpus. Offsets are in characters, one pair per
// character of the normalized text, stored as exceptions to "the character
// after the previous one's end".
func TestPrecompiledMatchesHF(t *testing.T) {
	checkNormalizerRecords(t, filepath.Join("testdata", "normalizer_hf.json"))
}

// checkNormalizerRecords compares the normalizers against a file written by
// hf_normalizer.py.
func checkNormalizerRecords(t *testing.T, path string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Reference   string   `json:"reference"`
		Tokenizer   string   `json:"tokenizer"`
		Texts       []string `json:"texts"`
		Normalizers map[string][]struct {
			Normalized *string  `json:"normalized"`
			Offsets    [][3]int `json:"offsets"`
		} `json:"normalizers"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	components := fixtureNormalizers(t, filepath.Join("testdata", fx.Tokenizer))
	if len(fx.Normalizers) != len(components) {
		t.Fatalf("recorded normalizers %d, want %d", len(fx.Normalizers), len(components))
	}
	for name, recs := range fx.Normalizers {
		comp, ok := components[name]
		if !ok {
			t.Fatalf("no normalizer %q in %s", name, fx.Tokenizer)
		}
		normalize, err := tokenize.ParseNormalizerForTest(comp)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(recs) != len(fx.Texts) {
			t.Fatalf("%s: %d records for %d texts", name, len(recs), len(fx.Texts))
		}
		bad := 0
		for i, text := range fx.Texts {
			want := text
			if recs[i].Normalized != nil {
				want = *recs[i].Normalized
			}
			got, spans, err := normalize(text)
			if err != nil {
				t.Fatalf("%s(%q): %v", name, text, err)
			}
			if got != want {
				bad++
				if bad <= 20 {
					t.Errorf("%s(%q) = %q, %s %q", name, text, got, fx.Reference, want)
				}
				continue
			}
			gotOffs := spanCharOffsets(text, got, spans)
			wantOffs := expandOffsets(recs[i].Offsets, utf8.RuneCountInString(want))
			if k := firstDiff(gotOffs, wantOffs); k >= 0 {
				bad++
				if bad > 20 {
					continue
				}
				t.Errorf("%s(%q) → %q: offsets of character %d are %v, %s %v\n got %v\nwant %v",
					name, text, got, k, gotOffs[k], fx.Reference, wantOffs[k], gotOffs, wantOffs)
			}
		}
		if bad > 0 {
			t.Errorf("%s: %d of %d texts differ", name, bad, len(fx.Texts))
		}
		t.Logf("%s: %d texts, %d mismatches", name, len(fx.Texts), bad)
	}
}

// fixtureNormalizers is the tokenizer file's normalizer ("sequence") and its
// Precompiled element alone ("precompiled").
func fixtureNormalizers(t testing.TB, path string) map[string][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Normalizer json.RawMessage `json:"normalizer"`
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	var seq struct {
		Normalizers []json.RawMessage `json:"normalizers"`
	}
	if err := json.Unmarshal(f.Normalizer, &seq); err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{"sequence": f.Normalizer}
	for _, n := range seq.Normalizers {
		if strings.Contains(string(n), `"Precompiled"`) {
			out["precompiled"] = n
		}
	}
	if out["precompiled"] == nil {
		t.Fatalf("%s: no Precompiled normalizer", path)
	}
	return out
}

// spanCharOffsets gives, for each character of out, the character offsets
// in text of the byte range its first byte came from.
func spanCharOffsets(text, out string, spans [][2]int) [][2]int {
	charAt := make([]int, len(text)+1)
	c := 0
	for b := 0; b < len(text); {
		_, size := utf8.DecodeRuneInString(text[b:])
		for k := range size {
			charAt[b+k] = c
		}
		b += size
		c++
	}
	charAt[len(text)] = c
	var offs [][2]int
	for b := 0; b < len(out); {
		_, size := utf8.DecodeRuneInString(out[b:])
		offs = append(offs, [2]int{charAt[spans[b][0]], charAt[spans[b][1]]})
		b += size
	}
	return offs
}

// expandOffsets undoes hf_normalizer.py's exception list.
func expandOffsets(exceptions [][3]int, n int) [][2]int {
	offs := make([][2]int, n)
	prev := 0
	for k := range offs {
		offs[k] = [2]int{prev, prev + 1}
		if len(exceptions) > 0 && exceptions[0][0] == k {
			offs[k] = [2]int{exceptions[0][1], exceptions[0][2]}
			exceptions = exceptions[1:]
		}
		prev = offs[k][1]
	}
	return offs
}

func firstDiff(a, b [][2]int) int {
	for k := range max(len(a), len(b)) {
		if k >= len(a) || k >= len(b) || a[k] != b[k] {
			return k
		}
	}
	return -1
}

// tinyCharsmap is a precompiled_charsmap with one rule, "a" → "b", its
// value (the rule's offset in the strings) replaced by value.
func tinyCharsmap(value uint32) string {
	// A darts-clone double array: the root (unit 0) has its children at
	// 1^label; unit 0x60 = 1^'a' has label 'a', a leaf and its own children
	// at 0x60^1, where unit 0x61 holds the value.
	units := make([]uint32, 0x62)
	units[0] = 1 << 10
	units[0x60] = 1<<10 | 1<<8 | 'a'
	units[0x61] = 1<<31 | value
	data := binary.LittleEndian.AppendUint32(nil, uint32(4*len(units)))
	for _, u := range units {
		data = binary.LittleEndian.AppendUint32(data, u)
	}
	data = append(data, "b\x00"...)
	return base64.StdEncoding.EncodeToString(data)
}

func precompiledComponent(charsmap string) string {
	return fmt.Sprintf(`{"type":"Precompiled","precompiled_charsmap":%q}`, charsmap)
}

func TestPrecompiledTinyCharsmap(t *testing.T) {
	normalize, err := tokenize.ParseNormalizerForTest([]byte(precompiledComponent(tinyCharsmap(0))))
	if err != nil {
		t.Fatal(err)
	}
	for in, want := range map[string]string{"": "", "xay": "xby", "aa\u0301": "bb", "\xffa\x00a": "\xffb\x00b"} {
		got, spans, err := normalize(in)
		if err != nil || got != want || len(spans) != len(got) {
			t.Errorf("normalize(%q) = %q, %v, %d spans; want %q", in, got, err, len(spans), want)
		}
	}
}

func TestPrecompiledRefusesBrokenCharsmap(t *testing.T) {
	good := tinyCharsmap(0)
	raw, _ := base64.StdEncoding.DecodeString(good)
	enc := base64.StdEncoding.EncodeToString
	cases := map[string]struct{ comp, want string }{
		"empty":         {precompiledComponent(""), "Precompiled: precompiled_charsmap: 0 bytes"},
		"missing":       {`{"type":"Precompiled"}`, "Precompiled: no precompiled_charsmap"},
		"null":          {`{"type":"Precompiled","precompiled_charsmap":null}`, "Precompiled: no precompiled_charsmap"},
		"not a string":  {`{"type":"Precompiled","precompiled_charsmap":7}`, "Precompiled: json"},
		"base64":        {precompiledComponent("@@@@"), "Precompiled: precompiled_charsmap: illegal base64"},
		"empty trie":    {precompiledComponent(enc([]byte{3, 0, 0, 0, 'x'})), "empty trie"},
		"short trie":    {precompiledComponent(enc(raw[:100])), "but only 96 follow"},
		"bad strings":   {precompiledComponent(enc(append(raw[:len(raw)-2:len(raw)-2], 0xff, 0))), "not valid UTF-8"},
		"value outside": {precompiledComponent(tinyCharsmap(3)), `rule for 61 points outside the normalized strings`},
	}
	for name, c := range cases {
		_, err := tokenize.ParseNormalizerForTest([]byte(c.comp))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, c.want)
		}
		file := `{"normalizer":` + c.comp + `,"model":{"type":"BPE","vocab":{"a":0},"merges":[]}}`
		if _, err := tokenize.Parse([]byte(file), nil); err == nil || !strings.Contains(err.Error(), "normalizer: Precompiled: ") {
			t.Errorf("%s: Parse error %v, want it to name the normalizer", name, err)
		}
	}
}

// FuzzPrecompiledNormalize runs the fixture's Precompiled normalizer (and
// its whole Sequence) on arbitrary bytes: no panic, the same output with
// and without alignment, and an alignment of in-range spans for every
// output byte.
func FuzzPrecompiledNormalize(f *testing.F) {
	raw, err := os.ReadFile(filepath.Join("testdata", "normalizer_hf.json"))
	if err != nil {
		f.Fatal(err)
	}
	var fx struct {
		Texts []string `json:"texts"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		f.Fatal(err)
	}
	for _, text := range fx.Texts[:120] {
		f.Add(text)
	}
	f.Add("\xff\xfe\x1e\xe0\xa4\x95\xe0\xa5\x8d")
	var normalizers []func(string) (string, [][2]int, error)
	for _, comp := range fixtureNormalizers(f, filepath.Join("testdata", "sentencepiece", "unigram", "tokenizer.json")) {
		n, err := tokenize.ParseNormalizerForTest(comp)
		if err != nil {
			f.Fatal(err)
		}
		normalizers = append(normalizers, n)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, normalize := range normalizers {
			out, spans, err := normalize(s)
			if err != nil {
				t.Fatalf("%q: %v", s, err)
			}
			if len(spans) != len(out) {
				t.Fatalf("%q → %q: %d spans", s, out, len(spans))
			}
			for _, sp := range spans {
				if sp[0] < 0 || sp[0] > sp[1] || sp[1] > len(s) {
					t.Fatalf("%q → %q: span %v", s, out, sp)
				}
			}
		}
	})
}
