package tokenize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"
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
			e := tok.EncodeFull(text, false)
			if !reflect.DeepEqual(e.IDs, rows[i].IDs) {
				t.Errorf("%s text %d: ids differ from %s", name, i, fx.Reference)
				continue
			}
			for k, got := range charOffsets(text, e.Offsets) {
				if got != rows[i].Offsets[k] {
					t.Errorf("%s text %d token %d (%d): offsets %v, %s %v", name, i, k, e.IDs[k], got, fx.Reference, rows[i].Offsets[k])
					break
				}
			}
		}
	}
}
