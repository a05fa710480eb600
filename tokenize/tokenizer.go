package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/google/renameio/v2"
)

// Tokenizer is a loaded tokenizer.json pipeline: added tokens → normalizer →
// pre-tokenizer → model, and back through the decoder. Encoding and decoding
// are safe for concurrent use; AddTokens is not (register tokens first).
type Tokenizer struct {
	path       string
	raw        []byte // the tokenizer.json, for Save
	normalizer normalizer
	pre        preTokenizer
	model      model
	post       *postProcessor
	decoder    decoder
	byteLevel  bool
	rewriter   sectionRewriter // the pre-tokenizer's text change before splitting (Metaspace), or nil
	config     *Config
	chat       *ChatFormat // set by SetChatFormat; nil: what config declares

	vocab     map[string]int // model and added tokens
	idToToken []string
	hasID     []bool
	added     []*AddedToken
	addedByID map[int]*AddedToken
	addedIdx  *addedIndex
}

// Encoding is the result of EncodeFull.
type Encoding struct {
	IDs []int64
	// Offsets are byte ranges [start, end) in the input text; special tokens
	// added by the post-processor have (0, 0).
	Offsets [][2]int
	// Special marks ids that are added tokens flagged special, or were added
	// by the post-processor.
	Special []bool
}

// Path is the file the tokenizer was loaded from ("" when parsed from bytes).
func (t *Tokenizer) Path() string { return t.path }

// Config is the tokenizer_config.json content (empty when there was none).
func (t *Tokenizer) Config() *Config { return t.config }

// VocabSize is one more than the largest id: the embedding rows a model needs.
func (t *Tokenizer) VocabSize() int { return len(t.idToToken) }

// TokenID returns the id of a token string (model or added).
func (t *Tokenizer) TokenID(tok string) (int64, bool) {
	id, ok := t.vocab[tok]
	return int64(id), ok
}

// Token returns the token string of an id.
func (t *Tokenizer) Token(id int64) (string, bool) {
	if id < 0 || id >= int64(len(t.idToToken)) || !t.hasID[id] {
		return "", false
	}
	return t.idToToken[id], true
}

// AddedTokens lists the added tokens (file's and registered ones).
func (t *Tokenizer) AddedTokens() []AddedToken {
	out := make([]AddedToken, len(t.added))
	for i, a := range t.added {
		out[i] = *a
	}
	return out
}

// ModelType is "BPE" or "WordPiece".
func (t *Tokenizer) ModelType() string { return t.model.typeName() }

// Encode returns the ids of text. Added and special tokens written in the
// text are recognised (as HF does by default); no special tokens are added
// around it.
func (t *Tokenizer) Encode(text string) []int64 {
	ids, _ := t.encode(text, false, make([]int64, 0, len(text)/3+4))
	return ids
}

// AppendEncode is Encode appending to dst.
func (t *Tokenizer) AppendEncode(dst []int64, text string) []int64 {
	ids, _ := t.encode(text, false, dst)
	return ids
}

// EncodeFull returns ids, offsets and the special mask; with addSpecial the
// post-processor's tokens (e.g. [CLS] … [SEP]) wrap the text.
func (t *Tokenizer) EncodeFull(text string, addSpecial bool) Encoding {
	ids, offs := t.encode(text, true, nil)
	e := Encoding{IDs: ids, Offsets: offs, Special: make([]bool, len(ids))}
	for i, id := range ids {
		if a := t.addedByID[int(id)]; a != nil && a.Special {
			e.Special[i] = true
		}
	}
	if addSpecial && t.post != nil && len(t.post.prefix)+len(t.post.suffix) > 0 {
		n := len(t.post.prefix) + len(ids) + len(t.post.suffix)
		out := Encoding{IDs: make([]int64, 0, n), Offsets: make([][2]int, 0, n), Special: make([]bool, 0, n)}
		for _, id := range t.post.prefix {
			out.IDs, out.Offsets, out.Special = append(out.IDs, id), append(out.Offsets, [2]int{}), append(out.Special, true)
		}
		out.IDs = append(out.IDs, e.IDs...)
		out.Offsets = append(out.Offsets, e.Offsets...)
		out.Special = append(out.Special, e.Special...)
		for _, id := range t.post.suffix {
			out.IDs, out.Offsets, out.Special = append(out.IDs, id), append(out.Offsets, [2]int{}), append(out.Special, true)
		}
		return out
	}
	return e
}

// SpecialPrefix and SpecialSuffix are the ids the post-processor puts around
// a single sequence.
func (t *Tokenizer) SpecialPrefix() []int64 { return append([]int64(nil), t.post.prefix...) }

// SpecialSuffix: see SpecialPrefix.
func (t *Tokenizer) SpecialSuffix() []int64 { return append([]int64(nil), t.post.suffix...) }

func (t *Tokenizer) encode(text string, withOffsets bool, ids []int64) ([]int64, [][2]int) {
	var offs [][2]int
	var lens []int
	if withOffsets {
		lens = make([]int, 0, 16)
	}
	var secBuf [16]section
	sections := t.addedIdx.split(secBuf[:0], text)
	piecesP := encodeBufs.Get().(*[]piece)
	defer func() { encodeBufs.Put(piecesP) }()
	for _, sec := range sections {
		if sec.added != nil {
			ids = append(ids, int64(sec.added.ID))
			if withOffsets {
				offs = append(offs, [2]int{sec.start, sec.end})
			}
			continue
		}
		raw := text[sec.start:sec.end]
		normed, spans := raw, []span(nil)
		if n := t.sectionNormalizer(sec.start == 0); n != nil {
			normed, spans = n.normalize(raw, withOffsets)
		}
		if normed == "" {
			continue
		}
		pieces := (*piecesP)[:0]
		whole := piece{s: normed}
		if t.pre != nil {
			pieces = t.pre.split(pieces, whole)
		} else {
			pieces = append(pieces, whole)
		}
		*piecesP = pieces[:0]
		for _, p := range pieces {
			if !withOffsets {
				ids, _ = t.model.encodeWord(ids, nil, p.s)
				continue
			}
			lens = lens[:0]
			n0 := len(ids)
			ids, lens = t.model.encodeWord(ids, lens, p.s)
			pos := 0
			for k := n0; k < len(ids); k++ {
				a, b := pos, pos+lens[k-n0]
				pos = b
				na := p.off + max(a-p.added, 0)
				nb := p.off + max(b-p.added, 0)
				offs = append(offs, mapSpan(spans, na, nb, len(normed), sec.start))
			}
		}
	}
	return ids, offs
}

var encodeBufs = sync.Pool{New: func() any { b := make([]piece, 0, 256); return &b }}

// mapSpan maps a normalized byte range to the original text.
func mapSpan(spans []span, a, b, n, base int) [2]int {
	if spans == nil {
		return [2]int{base + a, base + b}
	}
	if a >= n {
		a = n - 1
	}
	if b <= a {
		return [2]int{base + int(spans[a].start), base + int(spans[a].start)}
	}
	if b > n {
		b = n
	}
	return [2]int{base + int(spans[a].start), base + int(spans[b-1].end)}
}

// DecodeCompletion is the text of the assistant turn a generated completion
// makes: the chat format's Opens (what the generation prompt already began
// the turn with, e.g. Qwen3 Thinking-2507's "<think>\n") and ids decoded
// without special tokens. Rewards, answers and reports read this.
func (t *Tokenizer) DecodeCompletion(ids []int64) (string, error) {
	s, err := t.Decode(ids, true)
	if err != nil {
		return "", err
	}
	return t.ChatFormat().Opens + s, nil
}

// Decode turns ids back into text; with skipSpecial, special added tokens
// are left out. As in HF tokenizers, every token (added ones included) goes
// through the decoder, and an id the vocabulary does not have is left out:
// models often have more output rows than their tokenizer has tokens
// (Qwen2.5: 151,936 for 151,665), and a sampled id past the tokenizer is
// text-less, not an error. A negative id is an error.
func (t *Tokenizer) Decode(ids []int64, skipSpecial bool) (string, error) {
	toks := make([]string, 0, len(ids))
	for _, id := range ids {
		if id < 0 {
			return "", fmt.Errorf("decode: id %d is negative", id)
		}
		if id >= int64(len(t.idToToken)) || !t.hasID[id] {
			continue
		}
		if a := t.addedByID[int(id)]; a != nil && a.Special && skipSpecial {
			continue
		}
		toks = append(toks, t.idToToken[id])
	}
	if t.decoder == nil {
		return strings.Join(toks, ""), nil
	}
	return strings.Join(t.decoder.decodeChain(toks), ""), nil
}

// MarshalJSON writes the tokenizer.json this tokenizer was built from, with
// added_tokens replaced by the current list (so registered tag tokens are
// kept).
func (t *Tokenizer) MarshalJSON() ([]byte, error) {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(t.raw, &doc); err != nil {
		return nil, err
	}
	list := make([]addedTokenJSON, len(t.added))
	for i, a := range t.added {
		list[i] = addedTokenJSON{ID: a.ID, Content: a.Content, SingleWord: a.SingleWord, LStrip: a.LStrip,
			RStrip: a.RStrip, Normalized: a.Normalized, Special: a.Special}
	}
	var lb bytes.Buffer
	le := json.NewEncoder(&lb)
	le.SetEscapeHTML(false)
	if err := le.Encode(list); err != nil {
		return nil, err
	}
	b := bytes.TrimSpace(lb.Bytes())
	doc["added_tokens"] = b
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetEscapeHTML(false) // keep <|im_end|> readable
	if err := enc.Encode(doc); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

func writeFileAtomic(path string, b []byte) error {
	return renameio.WriteFile(path, b, 0o644)
}
