package tokenize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"unicode/utf8"
)

// TestOffsetsMatchHF compares ids and offsets with Hugging Face tokenizers
// (Rust), recorded by scripts/tokenize/hf_offsets.py into
// testdata/offsets_hf.json. HF reports offsets in characters; tagpr in bytes.
func TestOffsetsMatchHF(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "offsets_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Reference  string   `json:"reference"`
		Texts      []string `json:"texts"`
		Tokenizers map[string][]struct {
			IDs     []int64  `json:"ids"`
			Offsets [][2]int `json:"offsets"`
		} `json:"tokenizers"`
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	for name, rows := range fx.Tokenizers {
		tok := pinnedTokenizer(t, name)
		for i, text := range fx.Texts {
			charAt := make([]int, len(text)+1) // byte offset → character index
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
			e := tok.EncodeFull(text, false)
			if !reflect.DeepEqual(e.IDs, rows[i].IDs) {
				t.Errorf("%s text %d: ids differ from %s", name, i, fx.Reference)
				continue
			}
			for k, o := range e.Offsets {
				got := [2]int{charAt[o[0]], charAt[o[1]]}
				if o[1] > o[0] && charAt[o[1]-1] >= got[1] { // ends inside a character: count it whole
					got[1] = charAt[o[1]-1] + 1
				}
				if got != rows[i].Offsets[k] {
					t.Errorf("%s text %d token %d (%d): offsets %v, %s %v", name, i, k, e.IDs[k], got, fx.Reference, rows[i].Offsets[k])
					break
				}
			}
		}
	}
}
