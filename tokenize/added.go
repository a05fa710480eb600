package tokenize

import (
	"fmt"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// AddedToken is a token matched in raw text before normalization and
// pre-tokenization (special tokens such as <|im_end|>, tag tokens).
type AddedToken struct {
	ID         int
	Content    string
	Special    bool // skipped by Decode(ids, true)
	SingleWord bool // only matched when not inside a word
	LStrip     bool // swallows whitespace on its left
	RStrip     bool // swallows whitespace on its right
	Normalized bool
}

// addedIndex finds added tokens in text: leftmost, then longest, as the HF
// added vocabulary and the JS reference do.
type addedIndex struct {
	first  [256]bool
	byByte [256][]*AddedToken // candidates by first byte, longest first
}

func newAddedIndex(tokens []*AddedToken) *addedIndex {
	ix := &addedIndex{}
	for _, t := range tokens {
		if t.Content == "" {
			continue
		}
		b := t.Content[0]
		ix.first[b] = true
		ix.byByte[b] = append(ix.byByte[b], t)
	}
	for b := range ix.byByte {
		l := ix.byByte[b]
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].Content) > len(l[j].Content) })
	}
	return ix
}

// section is a run of input text: either plain text or one added token.
type section struct {
	start, end int
	added      *AddedToken
}

func isWordChar(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r)
}

// split cuts text into plain and added-token sections.
func (ix *addedIndex) split(dst []section, text string) []section {
	prev := 0
	for i := 0; i < len(text); i++ {
		if !ix.first[text[i]] {
			continue
		}
		var hit *AddedToken
		for _, t := range ix.byByte[text[i]] {
			if strings.HasPrefix(text[i:], t.Content) {
				if t.SingleWord && !singleWordOK(text, i, i+len(t.Content)) {
					continue
				}
				hit = t
				break
			}
		}
		if hit == nil {
			continue
		}
		start, end := i, i+len(hit.Content)
		if hit.LStrip {
			for start > prev {
				r, size := utf8.DecodeLastRuneInString(text[prev:start])
				if !unicode.IsSpace(r) {
					break
				}
				start -= size
			}
		}
		if hit.RStrip {
			for end < len(text) {
				r, size := utf8.DecodeRuneInString(text[end:])
				if !unicode.IsSpace(r) {
					break
				}
				end += size
			}
		}
		if start > prev {
			dst = append(dst, section{start: prev, end: start})
		}
		dst = append(dst, section{start: start, end: end, added: hit})
		prev = end
		i = end - 1
	}
	if prev < len(text) {
		dst = append(dst, section{start: prev, end: len(text)})
	}
	return dst
}

func singleWordOK(text string, a, b int) bool {
	if a > 0 {
		r, _ := utf8.DecodeLastRuneInString(text[:a])
		if isWordChar(r) {
			return false
		}
	}
	if b < len(text) {
		r, _ := utf8.DecodeRuneInString(text[b:])
		if isWordChar(r) {
			return false
		}
	}
	return true
}

// initVocab merges the model vocabulary with the added tokens into the id
// tables used for decoding and lookups.
func (t *Tokenizer) initVocab(added []addedTokenJSON) error {
	mv := t.model.modelVocab()
	t.vocab = make(map[string]int, len(mv)+len(added))
	maxID := -1
	for tok, id := range mv {
		t.vocab[tok] = id
		maxID = max(maxID, id)
	}
	t.addedByID = map[int]*AddedToken{}
	for i, a := range added {
		if a.Content == "" {
			return fmt.Errorf("added_tokens[%d]: empty content", i)
		}
		if a.ID < 0 || a.ID >= maxVocab {
			return fmt.Errorf("added_tokens[%d] %q: id %d out of range", i, a.Content, a.ID)
		}
		if id, ok := mv[a.Content]; ok && id != a.ID {
			return fmt.Errorf("added_tokens[%d] %q: id %d but the model vocab has it as %d", i, a.Content, a.ID, id)
		}
		tok := &AddedToken{ID: a.ID, Content: a.Content, Special: a.Special, SingleWord: a.SingleWord,
			LStrip: a.LStrip, RStrip: a.RStrip, Normalized: a.Normalized}
		t.added = append(t.added, tok)
		t.addedByID[a.ID] = tok
		t.vocab[a.Content] = a.ID
		maxID = max(maxID, a.ID)
	}
	if maxID >= len(mv)+len(added)+(1<<16) {
		return fmt.Errorf("ids reach %d with only %d tokens: the id space is implausibly sparse", maxID, len(mv)+len(added))
	}
	t.idToToken = make([]string, maxID+1)
	t.hasID = make([]bool, maxID+1)
	for tok, id := range t.vocab {
		t.idToToken[id] = tok
		t.hasID[id] = true
	}
	t.addedIdx = newAddedIndex(t.added)
	return nil
}

// AddTokens registers added tokens (e.g. tag tokens) at new ids after the
// current vocabulary; tokens already present keep their id. It returns the
// ids in order. Tokens added this way are matched in text like the file's
// own added tokens. The caller grows the model's embedding to VocabSize().
func (t *Tokenizer) AddTokens(contents []string, special bool) []int64 {
	ids := make([]int64, len(contents))
	for i, c := range contents {
		if id, ok := t.vocab[c]; ok {
			ids[i] = int64(id)
			if _, isAdded := t.addedByID[id]; !isAdded {
				tok := &AddedToken{ID: id, Content: c, Special: special}
				t.added = append(t.added, tok)
				t.addedByID[id] = tok
			}
			continue
		}
		id := len(t.idToToken)
		tok := &AddedToken{ID: id, Content: c, Special: special}
		t.added = append(t.added, tok)
		t.addedByID[id] = tok
		t.vocab[c] = id
		t.idToToken = append(t.idToToken, c)
		t.hasID = append(t.hasID, true)
		ids[i] = int64(id)
	}
	t.addedIdx = newAddedIndex(t.added)
	return ids
}
