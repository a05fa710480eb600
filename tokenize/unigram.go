package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"unicode/utf8"
)

// unigramModel is sentencepiece's Unigram model as HF tokenizers runs it
// (XLM-R, T5, mBART and the multilingual sentence encoders built on them):
// each word is cut where the pieces' summed log-probabilities are highest
// (Viterbi), a character no piece covers is unk, scored the lowest piece's
// score less 10, and runs of unk fuse into one.
type unigramModel struct {
	vocab        map[string]int // piece → id (the last id of a repeated piece, as HF)
	scores       []float64      // id → score
	unk          int            // -1 when the file names none
	byteFallback bool
	fallback     [256]int32 // the id of <0xNN>, -1 when absent
	maxLen       int        // the longest piece, in bytes
	unkScore     float64
}

type unigramJSON struct {
	Type         string            `json:"type"`
	UnkID        *int              `json:"unk_id"`
	Vocab        []json.RawMessage `json:"vocab"`
	ByteFallback bool              `json:"byte_fallback"`
}

func parseUnigram(raw json.RawMessage) (*unigramModel, error) {
	var j unigramJSON
	if err := decodeComponent(raw, &j); err != nil {
		return nil, fmt.Errorf("Unigram: vocab must be [[\"piece\", score], …], unk_id a number: %w", err)
	}
	if len(j.Vocab) == 0 {
		return nil, fmt.Errorf("Unigram: empty vocab")
	}
	if len(j.Vocab) >= maxVocab {
		return nil, fmt.Errorf("Unigram: %d pieces, more than %d", len(j.Vocab), maxVocab)
	}
	m := &unigramModel{vocab: make(map[string]int, len(j.Vocab)), scores: make([]float64, len(j.Vocab)), unk: -1, byteFallback: j.ByteFallback}
	minScore := math.Inf(1)
	for id, r := range j.Vocab {
		var entry [2]json.RawMessage
		var piece string
		if err := json.Unmarshal(r, &entry); err != nil || json.Unmarshal(entry[0], &piece) != nil {
			return nil, fmt.Errorf("Unigram: vocab[%d] is %s, want [\"piece\", score]", id, r)
		}
		score, err := serdeFloat(string(bytes.TrimSpace(entry[1])))
		if err != nil {
			return nil, fmt.Errorf("Unigram: vocab[%d] (%q): score: %w", id, piece, err)
		}
		if math.IsNaN(score) || math.IsInf(score, 0) {
			return nil, fmt.Errorf("Unigram: vocab[%d] (%q) has score %v", id, piece, score)
		}
		m.vocab[piece] = id
		m.scores[id] = score
		m.maxLen = max(m.maxLen, len(piece))
		minScore = min(minScore, score)
	}
	if j.UnkID != nil {
		if *j.UnkID < 0 || *j.UnkID >= len(j.Vocab) {
			return nil, fmt.Errorf("Unigram: unk_id %d outside the %d pieces", *j.UnkID, len(j.Vocab))
		}
		m.unk = *j.UnkID
	}
	m.unkScore = minScore - 10 // HF's kUnkPenalty
	for b := range m.fallback {
		m.fallback[b] = -1
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok && m.byteFallback {
			m.fallback[b] = int32(id)
		}
	}
	return m, nil
}

func (m *unigramModel) typeName() string           { return "Unigram" }
func (m *unigramModel) modelVocab() map[string]int { return m.vocab }

// unigramNode is the best way found to reach a byte position.
type unigramNode struct {
	score   float64
	from    int32 // where the last piece starts; -1 while unreached
	id      int32
	reached bool
}

// encodeWord finds the best segmentation as HF's encode_optimized does:
// positions in order, pieces from each in order of length, a later
// candidate replacing a reached node only when strictly better.
func (m *unigramModel) encodeWord(ids []int64, lens []int, word string) ([]int64, []int) {
	n := len(word)
	if n == 0 {
		return ids, lens
	}
	best := make([]unigramNode, n+1)
	best[0].reached = true
	for start := 0; start < n; {
		_, size := utf8.DecodeRuneInString(word[start:])
		here := best[start].score
		single := false
		for end := start + size; end <= n && end-start <= m.maxLen; {
			if id, ok := m.vocab[word[start:end]]; ok {
				s := here + m.scores[id]
				if t := &best[end]; !t.reached || s > t.score {
					*t = unigramNode{score: s, from: int32(start), id: int32(id), reached: true}
				}
				single = single || end == start+size
			}
			if end == n {
				break
			}
			_, next := utf8.DecodeRuneInString(word[end:])
			end += next
		}
		if !single {
			s := here + m.unkScore
			if t := &best[start+size]; !t.reached || s > t.score {
				*t = unigramNode{score: s, from: int32(start), id: int32(m.unk), reached: true}
			}
		}
		start += size
	}
	// Walk back; fuse runs of unk into one piece, as HF's fuse_unk (always
	// on for Unigram).
	type cut struct{ start, end, id int }
	var cuts []cut
	for end := n; end > 0; {
		node := best[end]
		start := int(node.from)
		if last := len(cuts) - 1; node.id == int32(m.unk) && m.unk >= 0 && last >= 0 && cuts[last].id == m.unk {
			cuts[last].start = start
		} else {
			cuts = append(cuts, cut{start, end, int(node.id)})
		}
		end = start
	}
	for k := len(cuts) - 1; k >= 0; k-- {
		c := cuts[k]
		piece := word[c.start:c.end]
		id, ok := m.vocab[piece]
		if !ok && m.byteFallback && m.hasFallback(piece) {
			for b := 0; b < len(piece); b++ {
				ids = append(ids, int64(m.fallback[piece[b]]))
				if lens != nil {
					lens = append(lens, 1)
				}
			}
			continue
		}
		if !ok {
			if m.unk < 0 {
				continue // HF errors; a tokenizer without unk drops what it cannot spell
			}
			id = m.unk
		}
		ids = append(ids, int64(id))
		if lens != nil {
			lens = append(lens, len(piece))
		}
	}
	return ids, lens
}

func (m *unigramModel) hasFallback(s string) bool {
	for b := 0; b < len(s); b++ {
		if m.fallback[s[b]] < 0 {
			return false
		}
	}
	return true
}
