package tokenize_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

// Concatenated token bytes are the text, even where a token holds only part
// of a character (which Decode of that token alone shows as U+FFFD): a
// byte-level token's bytes, or a sentencepiece byte-fallback token's
// (<0xNN>). Sentencepiece-style tokenizers add the space they write before
// the text ("▁hello").
func TestTokenBytes(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3", "sp-legacy", "sp-metaspace"} {
		tok := pinnedTokenizer(t, name)
		text := "hello wörld, 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 and 你好"
		var all []byte
		partial := false
		for _, id := range tok.Encode(text) {
			b, ok := tok.TokenBytes(id)
			if !ok {
				t.Fatalf("%s: no bytes for id %d", name, id)
			}
			partial = partial || !utf8.Valid(b)
			all = append(all, b...)
		}
		want := text
		if strings.HasPrefix(name, "sp-") {
			want = " " + text
		}
		if !bytes.Equal(all, []byte(want)) {
			t.Errorf("%s: token bytes %q, want %q", name, all, want)
		}
		if !partial {
			t.Errorf("%s: no token held a partial character; the test text should have one", name)
		}
	}
}
