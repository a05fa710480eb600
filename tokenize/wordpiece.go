package tokenize

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

type wordPieceJSON struct {
	Type                    string         `json:"type"`
	UnkToken                string         `json:"unk_token"`
	ContinuingSubwordPrefix *string        `json:"continuing_subword_prefix"`
	MaxInputCharsPerWord    *int           `json:"max_input_chars_per_word"`
	Vocab                   map[string]int `json:"vocab"`
}

// wordPieceModel is BERT's greedy longest-match-first subword model.
type wordPieceModel struct {
	vocab    map[string]int
	prefix   string
	cont     map[string]int // continuation tokens keyed without the prefix
	unk      int
	maxChars int
}

func parseWordPiece(raw json.RawMessage) (*wordPieceModel, error) {
	var j wordPieceJSON
	if err := decodeComponent(raw, &j); err != nil {
		return nil, fmt.Errorf("WordPiece: %w", err)
	}
	if len(j.Vocab) == 0 {
		return nil, fmt.Errorf("WordPiece: empty vocab")
	}
	for tok, id := range j.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("WordPiece: vocab token %q has id %d out of range", tok, id)
		}
	}
	m := &wordPieceModel{vocab: j.Vocab, prefix: "##", maxChars: 100}
	if j.ContinuingSubwordPrefix != nil {
		m.prefix = *j.ContinuingSubwordPrefix
	}
	if j.MaxInputCharsPerWord != nil {
		m.maxChars = *j.MaxInputCharsPerWord
	}
	unk, ok := j.Vocab[j.UnkToken]
	if !ok {
		return nil, fmt.Errorf("WordPiece: unk_token %q not in vocab", j.UnkToken)
	}
	m.unk = unk
	m.cont = make(map[string]int)
	for tok, id := range j.Vocab {
		if rest, ok := strings.CutPrefix(tok, m.prefix); ok && m.prefix != "" {
			m.cont[rest] = id
		}
	}
	if m.prefix == "" {
		m.cont = m.vocab
	}
	return m, nil
}

func (m *wordPieceModel) typeName() string           { return "WordPiece" }
func (m *wordPieceModel) modelVocab() map[string]int { return m.vocab }

func (m *wordPieceModel) encodeWord(ids []int64, lens []int, piece string) ([]int64, []int) {
	if piece == "" {
		return ids, lens
	}
	unk := func() ([]int64, []int) {
		ids = append(ids, int64(m.unk))
		if lens != nil {
			lens = append(lens, len(piece))
		}
		return ids, lens
	}
	if utf8.RuneCountInString(piece) > m.maxChars {
		return unk()
	}
	n0 := len(ids)
	var l0 int
	if lens != nil {
		l0 = len(lens)
	}
	start := 0
	for start < len(piece) {
		table := m.vocab
		if start > 0 {
			table = m.cont
		}
		end := len(piece)
		found := -1
		for end > start {
			if id, ok := table[piece[start:end]]; ok {
				found = id
				break
			}
			_, size := utf8.DecodeLastRuneInString(piece[start:end])
			end -= size
		}
		if found < 0 {
			ids = ids[:n0]
			if lens != nil {
				lens = lens[:l0]
			}
			return unk()
		}
		ids = append(ids, int64(found))
		if lens != nil {
			lens = append(lens, end-start)
		}
		start = end
	}
	return ids, lens
}

func parseModel(raw json.RawMessage) (model, error) {
	typ, err := typeOf(raw)
	if err != nil && strings.Contains(err.Error(), "no \"type\"") {
		// Files from early tokenizers releases omit the model type.
		var probe map[string]json.RawMessage
		if json.Unmarshal(raw, &probe) == nil {
			if _, ok := probe["merges"]; ok {
				typ, err = "BPE", nil
			} else if _, ok := probe["continuing_subword_prefix"]; ok {
				typ, err = "WordPiece", nil
			}
		}
	}
	if err != nil {
		return nil, err
	}
	switch typ {
	case "BPE":
		return parseBPE(raw)
	case "WordPiece":
		return parseWordPiece(raw)
	case "Unigram":
		return parseUnigram(raw)
	case "":
		return nil, fmt.Errorf("missing")
	default:
		return nil, fmt.Errorf("unsupported model type %q (supported: BPE, Unigram, WordPiece)", typ)
	}
}
