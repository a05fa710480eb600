package tokenize_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tagpr/tagpr/tokenize"
)

const tinyWordPiece = `{"added_tokens":[{"id":0,"content":"[UNK]","special":true},{"id":1,"content":"[CLS]","special":true},{"id":2,"content":"[SEP]","special":true}],
"normalizer":{"type":"BertNormalizer","lowercase":true},"pre_tokenizer":{"type":"BertPreTokenizer"},
"post_processor":{"type":"BertProcessing","sep":["[SEP]",2],"cls":["[CLS]",1]},
"decoder":{"type":"WordPiece","prefix":"##"},
"model":{"type":"WordPiece","unk_token":"[UNK]","vocab":{"[UNK]":0,"[CLS]":1,"[SEP]":2,"hello":3,"##lo":4,"hel":5,",":6}}}`

const tinyBPE = `{"added_tokens":[{"id":5,"content":"<s>","special":true}],
"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":true,"use_regex":true},
"decoder":{"type":"Sequence","decoders":[{"type":"ByteLevel"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"post_processor":{"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<s>"}},{"Sequence":{"id":"A"}}],"special_tokens":{"<s>":{"id":"<s>","ids":[5],"tokens":["<s>"]}}},
"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2,"Ġ":3,"Ġab":4},"merges":["a b","Ġ ab"]}}`

const tinySentencepiece = `{"added_tokens":[{"id":0,"content":"<unk>","special":true},{"id":1,"content":"<s>","special":true}],
"normalizer":{"type":"Sequence","normalizers":[{"type":"Prepend","prepend":"▁"},{"type":"Replace","pattern":{"String":" "},"content":"▁"}]},
"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true},
"decoder":{"type":"Sequence","decoders":[{"type":"Replace","pattern":{"String":"▁"},"content":" "},{"type":"ByteFallback"},{"type":"Fuse"},{"type":"Strip","content":" ","start":1,"stop":0}]},
"model":{"type":"BPE","unk_token":"<unk>","fuse_unk":true,"byte_fallback":true,"vocab":{"<unk>":0,"<s>":1,"<0xC3>":2,"<0x9C>":3,"▁":4,"a":5,"b":6,"▁a":7,"▁ab":8},"merges":["▁ a","▁a b"]}}`

const tinyUnigram = `{"added_tokens":[{"id":0,"content":"<unk>","special":true}],
"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
"decoder":{"type":"Metaspace","replacement":"▁","prepend_scheme":"always","split":true},
"model":{"type":"Unigram","unk_id":0,"byte_fallback":true,"vocab":[["<unk>",0],["▁",-1.5],["a",-2.25],["b",-3],["ab",-4.1],["▁ab",-4.5],["<0xC3>",-9],["<0x9C>",-9]]}}`

// FuzzLoadTokenizer feeds mutated tokenizer.json files to the loader: it
// must return a tokenizer or an error, never panic, and a tokenizer it
// returns must encode and decode without panicking.
func FuzzLoadTokenizer(f *testing.F) {
	trained, err := os.ReadFile(filepath.Join("testdata", "trained", "tokenizer.json"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(trained)
	f.Add([]byte(tinyWordPiece))
	f.Add([]byte(tinyBPE))
	f.Add([]byte(tinySentencepiece))
	f.Add([]byte(tinyUnigram))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{},"merges":[]}}`))
	f.Add([]byte(`{"model":{"type":"WordPiece","unk_token":"x","vocab":{"x":99999999}}}`))
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[{"type":"Replace","pattern":{"Regex":"a*"},"content":"b"}]}}`))
	f.Add([]byte(`{"normalizer":{"type":"Sequence","normalizers":[` + precompiledComponent(tinyCharsmap(0)) +
		`,{"type":"Strip","strip_left":false,"strip_right":true}]},"model":{"type":"BPE","vocab":{"a":0,"b":1,"ab":2},"merges":["a b"]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := tokenize.Parse(data, data)
		if err != nil {
			return
		}
		for _, s := range []string{"", "hello, world", "ab ab<s>ab", "Ünïcödé 東京 👍🏽\r\n\t 123"} {
			ids := tok.EncodeFull(s, true).IDs
			if _, err := tok.Decode(ids, false); err != nil {
				t.Fatalf("decode of its own ids %v: %v", ids, err)
			}
		}
	})
}

func TestTinyTokenizers(t *testing.T) {
	wp, err := tokenize.Parse([]byte(tinyWordPiece), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := wp.EncodeFull("Hello, HELLO hel", true).IDs; !equalInts(got, []int64{1, 3, 6, 3, 5, 2}) {
		t.Errorf("wordpiece ids %v", got)
	}
	if got := wp.Encode("hello hellolo xyz"); !equalInts(got, []int64{3, 3, 4, 0}) {
		t.Errorf("wordpiece continuation/unk ids %v", got)
	}
	bpe, err := tokenize.Parse([]byte(tinyBPE), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := bpe.EncodeFull("ab", true).IDs; !equalInts(got, []int64{5, 4}) {
		t.Errorf("bpe ids %v (prefix space, Ġ+ab merge, template <s>)", got)
	}
	if got, _ := bpe.Decode([]int64{4, 2}, false); got != "abab" {
		t.Errorf("bpe decode %q (ByteLevel then Strip one leading space)", got)
	}
}

func equalInts(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// FuzzEncode runs arbitrary (also invalid UTF-8) text through the real
// tokenizers with offsets: no panic, offsets inside the text and ordered,
// and byte-level tokenizers give the text back for valid UTF-8 input.
func FuzzEncode(f *testing.F) {
	for _, s := range []string{"Hello, World! it's 12345", "e\u0301 Ä\u0308 \xff\xfe<|im_end|>", "[CLS]東京 👍🏽\r\n\t", "\x00\u0085\ufeff ſ'S"} {
		f.Add(s)
	}
	names := []string{"qwen3", "llama3", "bert", "trained"}
	for _, n := range names {
		pinnedTokenizer(f, n)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, n := range names {
			tok := pinnedTokenizer(t, n)
			e := tok.EncodeFull(s, true)
			for _, o := range e.Offsets {
				if o[0] < 0 || o[1] < o[0] || o[1] > len(s) {
					t.Fatalf("%s: offsets %v outside %q", n, o, s)
				}
			}
			if n == "llama3" && utf8.ValidString(s) {
				back, err := tok.Decode(tok.Encode(s), false)
				if err != nil || back != s {
					t.Fatalf("llama3 round trip of %q: %q %v", s, back, err)
				}
			}
		}
	})
}

func TestModelWithoutType(t *testing.T) {
	untyped := `{"model":{"unk_token":"[UNK]","continuing_subword_prefix":"##","vocab":{"[UNK]":0,"hello":1,"##lo":2}}}`
	tok, err := tokenize.Parse([]byte(untyped), nil)
	if err != nil || tok.ModelType() != "WordPiece" {
		t.Fatalf("untyped WordPiece: %v", err)
	}
	if got := tok.Encode("hellolo"); !equalInts(got, []int64{1, 2}) {
		t.Errorf("ids %v", got)
	}
	if _, err := tokenize.Parse([]byte(`{"model":{"vocab":{"a":0}}}`), nil); err == nil || !strings.Contains(err.Error(), "model") {
		t.Errorf("unrecognisable model: %v", err)
	}
}
