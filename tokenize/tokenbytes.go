package tokenize

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
