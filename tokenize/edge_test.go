package tokenize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestEdgeCasesMatchHF holds Encode, EncodeFull (offsets, add_special_tokens)
// and Decode (skip_special_tokens both ways) to Hugging Face tokenizers on
// adversarial texts, recorded by scripts/tokenize/hf_edge.py into
// testdata/edge_hf.json: NFKC ligatures and titlecase digraphs (a panic in
// EncodeFull), marks that NFC reorders or folds into the character before
// (offsets), and characters cut between tokens, which from_utf8_lossy
// decodes to one U+FFFD per maximal invalid subpart.
func TestEdgeCasesMatchHF(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "edge_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Reference  string   `json:"reference"`
		Texts      []string `json:"texts"`
		Tokenizers map[string]struct {
			Encode []struct {
				IDs        []int64  `json:"ids"`
				Offsets    [][2]int `json:"offsets"`
				IDsSpecial []int64  `json:"ids_special"`
			} `json:"encode"`
			Decode []struct {
				IDs      []int64 `json:"ids"`
				Text     string  `json:"text"`
				TextSkip string  `json:"text_skip"`
			} `json:"decode"`
		} `json:"tokenizers"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	for name, want := range fx.Tokenizers {
		tok := pinnedTokenizer(t, name)
		for i, text := range fx.Texts {
			w := want.Encode[i]
			if got := tok.Encode(text); !sameIDs(got, w.IDs) {
				t.Errorf("%s Encode(%q) = %v, %s %v", name, text, got, fx.Reference, w.IDs)
				continue
			}
			if got := tok.EncodeFull(text, true).IDs; !sameIDs(got, w.IDsSpecial) {
				t.Errorf("%s EncodeFull(%q, true) = %v, %s %v", name, text, got, fx.Reference, w.IDsSpecial)
			}
			e := tok.EncodeFull(text, false)
			if !sameIDs(e.IDs, w.IDs) {
				t.Errorf("%s EncodeFull(%q, false) = %v, %s %v", name, text, e.IDs, fx.Reference, w.IDs)
				continue
			}
			got := charOffsets(text, e.Offsets)
			if len(got) == 0 && len(w.Offsets) == 0 {
				continue
			}
			if !reflect.DeepEqual(got, w.Offsets) {
				t.Errorf("%s offsets of %q = %v, %s %v", name, text, got, fx.Reference, w.Offsets)
			}
		}
		for _, d := range want.Decode {
			for _, skip := range []bool{false, true} {
				wantText := d.Text
				if skip {
					wantText = d.TextSkip
				}
				got, err := tok.Decode(d.IDs, skip)
				if err != nil || got != wantText {
					t.Errorf("%s Decode(%v, %v) = %q, %v; %s %q", name, d.IDs, skip, got, err, fx.Reference, wantText)
				}
			}
		}
	}
}

func sameIDs(a, b []int64) bool { return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b)) }

// charOffsets turns byte offsets into HF's character offsets; a token ending
// inside a character counts it whole.
func charOffsets(text string, offs [][2]int) [][2]int {
	charAt := make([]int, len(text)+1)
	c := 0
	for b := 0; b < len(text); {
		_, size := utf8.DecodeRuneInString(text[b:])
		for k := 0; k < size; k++ {
			charAt[b+k] = c
		}
		b += size
		c++
	}
	charAt[len(text)] = c
	out := make([][2]int, len(offs))
	for k, o := range offs {
		out[k] = [2]int{charAt[o[0]], charAt[o[1]]}
		if o[1] > o[0] && charAt[o[1]-1] >= out[k][1] {
			out[k][1] = charAt[o[1]-1] + 1
		}
	}
	return out
}
