package tokenize

import "strings"

// TokenBytes is the text one token stands for, as raw bytes. A byte-level
// token can hold part of a UTF-8 character, which Decode shows as U+FFFD;
// per-token reports (log-probs in an OpenAI-style response) need the bytes.
func (t *Tokenizer) TokenBytes(id int64) ([]byte, bool) {
	tok, ok := t.Token(id)
	if !ok {
		return nil, false
	}
	if t.addedByID[int(id)] == nil && byteLevel(t.decoder) {
		if raw, ok := byteLevelDecode(tok); ok {
			return []byte(raw), true
		}
	}
	if fallback, ok := t.sentencepiece(); ok && t.addedByID[int(id)] == nil {
		// Sentencepiece-style: a <0xNN> token is its byte, and "▁" a space
		// wherever the token stands (Decode's Strip would take the space
		// of a token decoded alone).
		if b, ok := fallbackByte(tok); ok && fallback {
			return []byte{b}, true
		}
		return []byte(strings.ReplaceAll(tok, t.metaspace(), " ")), true
	}
	s, err := t.Decode([]int64{id}, false)
	return []byte(s), err == nil
}

func byteLevel(d decoder) bool {
	switch d := d.(type) {
	case byteLevelDecoder:
		return true
	case sequenceDecoder:
		for _, x := range d {
			if byteLevel(x) {
				return true
			}
		}
	}
	return false
}

// metaspace is the character sentencepiece-style tokenizers write for a
// space: the Metaspace pre-tokenizer's replacement, else "▁" (Llama 2's
// legacy files replace spaces with it in their normalizer).
func (t *Tokenizer) metaspace() string {
	if m, ok := t.rewriter.(metaspacePre); ok {
		return m.replacement
	}
	return "\u2581"
}

// sentencepiece reports whether the model is a sentencepiece one
// (character-level BPE or Unigram) and whether it has byte fallback.
func (t *Tokenizer) sentencepiece() (byteFallback, ok bool) {
	switch m := t.model.(type) {
	case *bpeModel:
		return m.byteFallback, m.charLevel
	case *unigramModel:
		return m.byteFallback, true
	}
	return false, false
}
