package tokenize

import (
	_ "embed"
	"encoding/json"
	"sort"
	"sync"
)

// bertUnicodeJSON holds the characters HF tokenizers' BERT components treat
// as punctuation, control characters and nonspacing marks, recorded by
// scripts/tokenize/hf_bert_unicode.py. HF classifies with tables of an older
// Unicode than Go's unicode package: U+061D (Unicode 14) is no punctuation
// there and U+0B55 (13) no mark, while U+1734 is still a mark.
//
//go:embed bert_unicode.json
var bertUnicodeJSON []byte

// codeRanges is a sorted list of inclusive code point ranges.
type codeRanges [][2]rune

func (c codeRanges) has(r rune) bool {
	i := sort.Search(len(c), func(i int) bool { return c[i][1] >= r })
	return i < len(c) && c[i][0] <= r
}

// bertTables are the classes, read on first use (only BERT tokenizers
// need them, not every command's start).
var bertTables = sync.OnceValue(func() (t struct{ Punct, Control, Mark codeRanges }) {
	if err := json.Unmarshal(bertUnicodeJSON, &t); err != nil || len(t.Punct) == 0 || len(t.Control) == 0 || len(t.Mark) == 0 {
		panic("tokenize: bert_unicode.json is broken (rerun scripts/tokenize/hf_bert_unicode.py)")
	}
	return t
})
