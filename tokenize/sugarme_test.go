package tokenize_test

import (
	"testing"
)

// TestSugarmePipeline runs the corrected components inside
// github.com/sugarme/tokenizer's own pipeline (Tokenizer.EncodeSingle with
// tagpr's normalizer, pre-tokenizer, model and decoder plugged in through
// its interfaces) and checks the reference ids on part of the parity corpus.
func TestSugarmePipeline(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3", "bert", "sp-legacy", "sp-metaspace"} {
		t.Run(name, func(t *testing.T) {
			tok := pinnedTokenizer(t, name)
			fx := readFixture(t, name)
			p := tok.SugarmePipeline()
			docs := parityCorpus()
			for i := 0; i < len(docs); i += 16 {
				got, err := p.Encode(docs[i])
				if err != nil {
					t.Fatal(err)
				}
				if msg := compareIDs(got, fx.Docs[i]); msg != "" {
					t.Fatalf("doc %d through sugarme: %s", i, msg)
				}
			}
			dec := p.Tokenizer().GetDecoder()
			if dec == nil {
				t.Fatal("no decoder plugged in")
			}
		})
	}
}
