package tokenize

import (
	"encoding/json"
	"fmt"
	"hash/maphash"
	"math"
	"strings"
	"sync"
	"unicode/utf8"
)

// model turns one pre-token into ids. Implementations are safe for
// concurrent use.
type model interface {
	// encodeWord appends the ids of piece to ids and, when lens is non-nil,
	// the byte length in piece that each id covers.
	encodeWord(ids []int64, lens []int, piece string) ([]int64, []int)
	// modelVocab is the model's own vocabulary (token string → id).
	modelVocab() map[string]int
	typeName() string
}

type bpeJSON struct {
	Type                    string          `json:"type"`
	Dropout                 *float64        `json:"dropout"`
	UnkToken                *string         `json:"unk_token"`
	ContinuingSubwordPrefix *string         `json:"continuing_subword_prefix"`
	EndOfWordSuffix         *string         `json:"end_of_word_suffix"`
	FuseUnk                 bool            `json:"fuse_unk"`
	ByteFallback            bool            `json:"byte_fallback"`
	IgnoreMerges            bool            `json:"ignore_merges"`
	Vocab                   map[string]int  `json:"vocab"`
	Merges                  json.RawMessage `json:"merges"`
}

// bpeModel is BPE over integer ids: a pair of ids maps to its merge rank and
// the merged id, so encoding never builds token strings. It runs byte-level
// (GPT-2's alphabet: every byte has a token) or character-level, as
// sentencepiece's BPE models converted by transformers are (Llama 2,
// Mistral): a word starts as its characters, and a character the vocabulary
// lacks becomes its UTF-8 bytes' <0xNN> tokens (byte_fallback) or unk.
type bpeModel struct {
	vocab        map[string]int
	mergeList    [][2]string
	merges       map[uint64]uint64 // left<<32|right → rank<<32|merged
	ignoreMerges bool
	unk          int  // -1 when the model has no unk token
	fuseUnk      bool // consecutive unknown characters make one unk
	byteFallback bool // unknown characters become <0xNN> byte tokens
	charLevel    bool // symbols start as characters, not bytes

	byteID   [256]int32       // byte-level: the id of each single byte
	charID   map[rune]int32   // character-level: the id of each one-character token
	fallback [256]int32       // character-level: the id of <0xNN>, -1 when absent
	rawVocab map[string]int32 // raw bytes of each token → id (for ignore_merges)
	rawLen   []int32          // id → raw byte length (for offsets)
	cache    wordCache
}

func parseBPE(raw json.RawMessage) (*bpeModel, error) {
	var j bpeJSON
	if err := decodeComponent(raw, &j); err != nil {
		return nil, fmt.Errorf("BPE: %w", err)
	}
	if j.Dropout != nil && *j.Dropout != 0 {
		return nil, fmt.Errorf("BPE: dropout %v is not supported (inference tokenizers have none)", *j.Dropout)
	}
	if j.ContinuingSubwordPrefix != nil && *j.ContinuingSubwordPrefix != "" {
		return nil, fmt.Errorf("BPE: continuing_subword_prefix %q is not supported", *j.ContinuingSubwordPrefix)
	}
	if j.EndOfWordSuffix != nil && *j.EndOfWordSuffix != "" {
		return nil, fmt.Errorf("BPE: end_of_word_suffix %q is not supported", *j.EndOfWordSuffix)
	}
	if len(j.Vocab) == 0 {
		return nil, fmt.Errorf("BPE: empty vocab")
	}
	m := &bpeModel{vocab: j.Vocab, ignoreMerges: j.IgnoreMerges, unk: -1, fuseUnk: j.FuseUnk, byteFallback: j.ByteFallback}
	for tok, id := range j.Vocab {
		if id < 0 || id >= maxVocab {
			return nil, fmt.Errorf("BPE: vocab token %q has id %d out of range", tok, id)
		}
	}
	if j.UnkToken != nil && *j.UnkToken != "" {
		id, ok := j.Vocab[*j.UnkToken]
		if !ok {
			return nil, fmt.Errorf("BPE: unk_token %q not in vocab", *j.UnkToken)
		}
		m.unk = id
	}
	list, err := parseMerges(j.Merges)
	if err != nil {
		return nil, fmt.Errorf("BPE: %w", err)
	}
	m.mergeList = list
	m.merges = make(map[uint64]uint64, len(list))
	for rank, p := range list {
		a, okA := j.Vocab[p[0]]
		b, okB := j.Vocab[p[1]]
		ab, okAB := j.Vocab[p[0]+p[1]]
		if !okA || !okB || !okAB {
			return nil, fmt.Errorf("BPE: merge %d (%q %q) uses a token missing from vocab", rank, p[0], p[1])
		}
		key := uint64(a)<<32 | uint64(b)
		if _, dup := m.merges[key]; dup {
			continue // the first (lowest) rank wins, as in HF
		}
		m.merges[key] = uint64(rank)<<32 | uint64(ab)
	}
	return m, nil
}

// parseMerges accepts both serialisations: "a b" strings (tokenizers < 0.20)
// and ["a","b"] pairs.
func parseMerges(raw json.RawMessage) ([][2]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var asStrings []string
	if err := json.Unmarshal(raw, &asStrings); err == nil {
		out := make([][2]string, len(asStrings))
		for i, s := range asStrings {
			a, b, ok := strings.Cut(s, " ")
			if !ok || a == "" || b == "" {
				return nil, fmt.Errorf("merge %d %q is not \"A B\"", i, s)
			}
			out[i] = [2]string{a, b}
		}
		return out, nil
	}
	var asPairs [][]string
	if err := json.Unmarshal(raw, &asPairs); err != nil {
		return nil, fmt.Errorf("merges: want [\"a b\", ...] or [[\"a\",\"b\"], ...]: %w", err)
	}
	out := make([][2]string, len(asPairs))
	for i, p := range asPairs {
		if len(p) != 2 || p[0] == "" || p[1] == "" {
			return nil, fmt.Errorf("merge %d has %d parts, want 2 non-empty", i, len(p))
		}
		out[i] = [2]string{p[0], p[1]}
	}
	return out, nil
}

// initByteLevel derives the raw-byte views of the vocabulary used by the
// byte-level fast path.
func (m *bpeModel) initByteLevel() error {
	for b := 0; b < 256; b++ {
		m.byteID[b] = -1
		if id, ok := m.vocab[string(byteToRune[b])]; ok {
			m.byteID[b] = int32(id)
		}
	}
	maxID := 0
	for _, id := range m.vocab {
		maxID = max(maxID, id)
	}
	m.rawLen = make([]int32, maxID+1)
	m.rawVocab = make(map[string]int32, len(m.vocab))
	for tok, id := range m.vocab {
		raw, ok := byteLevelDecode(tok)
		if !ok {
			// Not made of byte-level characters: unreachable from text.
			m.rawLen[id] = int32(len(tok))
			continue
		}
		m.rawLen[id] = int32(len(raw))
		m.rawVocab[raw] = int32(id)
	}
	return nil
}

// initCharLevel derives the views of the vocabulary used when symbols start
// as characters: one-character tokens, the <0xNN> byte tokens, and each
// token's byte length (its text is the normalized text it covers).
func (m *bpeModel) initCharLevel() error {
	m.charLevel = true
	maxID := 0
	for _, id := range m.vocab {
		maxID = max(maxID, id)
	}
	m.rawLen = make([]int32, maxID+1)
	m.rawVocab = make(map[string]int32, len(m.vocab))
	m.charID = make(map[rune]int32)
	for tok, id := range m.vocab {
		m.rawLen[id] = int32(len(tok))
		m.rawVocab[tok] = int32(id)
		if r, size := utf8.DecodeRuneInString(tok); size == len(tok) && (r != utf8.RuneError || size > 1) {
			m.charID[r] = int32(id)
		}
	}
	for b := range m.fallback {
		m.fallback[b] = -1
		if !m.byteFallback {
			continue
		}
		if id, ok := m.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			m.fallback[b] = int32(id)
			m.rawLen[id] = 1
		}
	}
	return nil
}

func (m *bpeModel) typeName() string           { return "BPE" }
func (m *bpeModel) modelVocab() map[string]int { return m.vocab }

func (m *bpeModel) encodeWord(ids []int64, lens []int, piece string) ([]int64, []int) {
	if len(piece) == 0 {
		return ids, lens
	}
	if m.ignoreMerges {
		if id, ok := m.rawVocab[piece]; ok {
			ids = append(ids, int64(id))
			if lens != nil {
				lens = append(lens, len(piece))
			}
			return ids, lens
		}
	}
	syms := m.cache.get(piece)
	if syms == nil {
		syms = m.merge(piece)
		m.cache.put(piece, syms)
	}
	for _, s := range syms {
		id := int(s)
		if s < 0 {
			if m.unk < 0 {
				continue
			}
			id = m.unk
		}
		ids = append(ids, int64(id))
		if lens != nil {
			if s < 0 {
				lens = append(lens, int(-s)) // an unknown symbol holds its byte length
			} else {
				lens = append(lens, int(m.rawLen[s]))
			}
		}
	}
	return ids, lens
}

const noRank = math.MaxUint32

func (m *bpeModel) lookup(a, b int32) (rank uint32, merged int32) {
	if a < 0 || b < 0 {
		return noRank, -1
	}
	v, ok := m.merges[uint64(a)<<32|uint64(b)]
	if !ok {
		return noRank, -1
	}
	return uint32(v >> 32), int32(uint32(v))
}

// merge applies merges to the symbols of word, lowest rank first and, among
// equal ranks, leftmost first (the order of HF tokenizers and the JS port).
// An unknown symbol is -(its byte length).
func (m *bpeModel) merge(word string) []int32 {
	var syms []int32
	if m.charLevel {
		syms = m.charSymbols(word)
	} else {
		syms = make([]int32, len(word))
		for i := 0; i < len(word); i++ {
			syms[i] = m.byteID[word[i]]
		}
	}
	n := len(syms)
	if n == 1 {
		return syms
	}
	if n > 48 {
		return m.mergeHeap(syms)
	}
	var ranksBuf, mergedBuf [48]uint32
	ranks, merged := ranksBuf[:n-1], mergedBuf[:n-1]
	for i := 0; i < n-1; i++ {
		r, id := m.lookup(syms[i], syms[i+1])
		ranks[i], merged[i] = r, uint32(id)
	}
	for len(syms) > 1 {
		best, bestRank := -1, uint32(noRank)
		for i, r := range ranks {
			if r < bestRank {
				best, bestRank = i, r
			}
		}
		if best < 0 {
			break
		}
		syms[best] = int32(merged[best])
		copy(syms[best+1:], syms[best+2:])
		syms = syms[:len(syms)-1]
		copy(ranks[best:], ranks[best+1:])
		copy(merged[best:], merged[best+1:])
		ranks, merged = ranks[:len(ranks)-1], merged[:len(merged)-1]
		if best > 0 {
			r, id := m.lookup(syms[best-1], syms[best])
			ranks[best-1], merged[best-1] = r, uint32(id)
		}
		if best < len(syms)-1 {
			r, id := m.lookup(syms[best], syms[best+1])
			ranks[best], merged[best] = r, uint32(id)
		}
	}
	return syms
}

// charSymbols is the starting symbols of word for character-level BPE, as HF
// tokenizers' BPE builds them: each character's token; else, with
// byte_fallback, its bytes' <0xNN> tokens when the vocabulary has them all;
// else unknown (-(byte length)), runs of which fuse with fuse_unk.
func (m *bpeModel) charSymbols(word string) []int32 {
	syms := make([]int32, 0, len(word))
	prevUnk := false
	for i, r := range word {
		size := utf8.RuneLen(r)
		invalid := false // a byte that is not UTF-8 decodes as U+FFFD but is not that character
		if r == utf8.RuneError {
			_, size = utf8.DecodeRuneInString(word[i:])
			invalid = size == 1
		}
		if id, ok := m.charID[r]; ok && !invalid {
			syms, prevUnk = append(syms, id), false
			continue
		}
		if m.byteFallback && m.hasFallback(word[i:i+size]) {
			for k := i; k < i+size; k++ {
				syms = append(syms, m.fallback[word[k]])
			}
			prevUnk = false
			continue
		}
		if prevUnk && m.fuseUnk {
			syms[len(syms)-1] -= int32(size)
			continue
		}
		syms, prevUnk = append(syms, -int32(size)), true
	}
	return syms
}

func (m *bpeModel) hasFallback(s string) bool {
	for k := 0; k < len(s); k++ {
		if m.fallback[s[k]] < 0 {
			return false
		}
	}
	return true
}

// mergeCand is a possible merge of the symbol at pos with its right neighbour.
type mergeCand struct {
	rank        uint32
	pos         int32
	left, right int32
	merged      int32
}

func candLess(a, b mergeCand) bool {
	return a.rank < b.rank || (a.rank == b.rank && a.pos < b.pos)
}

// mergeHeap is merge for long words: a linked list of symbols and a binary
// heap of candidate merges, O(n log n). A candidate is stale when either side
// changed; ids only ever grow into longer tokens, so comparing ids suffices.
func (m *bpeModel) mergeHeap(syms []int32) []int32 {
	n := len(syms)
	next := make([]int32, n)
	prev := make([]int32, n)
	for i := range syms {
		next[i], prev[i] = int32(i+1), int32(i-1)
	}
	next[n-1] = -1
	heap := make([]mergeCand, 0, n)
	push := func(c mergeCand) {
		heap = append(heap, c)
		i := len(heap) - 1
		for i > 0 {
			p := (i - 1) / 2
			if !candLess(heap[i], heap[p]) {
				break
			}
			heap[i], heap[p] = heap[p], heap[i]
			i = p
		}
	}
	pop := func() mergeCand {
		top := heap[0]
		last := len(heap) - 1
		heap[0] = heap[last]
		heap = heap[:last]
		i := 0
		for {
			l, r, s := 2*i+1, 2*i+2, i
			if l < len(heap) && candLess(heap[l], heap[s]) {
				s = l
			}
			if r < len(heap) && candLess(heap[r], heap[s]) {
				s = r
			}
			if s == i {
				break
			}
			heap[i], heap[s] = heap[s], heap[i]
			i = s
		}
		return top
	}
	consider := func(p int32) {
		q := next[p]
		if q < 0 {
			return
		}
		if r, id := m.lookup(syms[p], syms[q]); r != noRank {
			push(mergeCand{rank: r, pos: p, left: syms[p], right: syms[q], merged: id})
		}
	}
	for i := 0; i < n-1; i++ {
		consider(int32(i))
	}
	alive := make([]bool, n)
	for i := range alive {
		alive[i] = true
	}
	for len(heap) > 0 {
		c := pop()
		p := c.pos
		q := next[p]
		if !alive[p] || q < 0 || syms[p] != c.left || syms[q] != c.right {
			continue
		}
		syms[p] = c.merged
		alive[q] = false
		next[p] = next[q]
		if next[q] >= 0 {
			prev[next[q]] = p
		}
		if prev[p] >= 0 {
			consider(prev[p])
		}
		consider(p)
	}
	out := make([]int32, 0, n)
	for i := int32(0); i >= 0; i = next[i] {
		out = append(out, syms[i])
	}
	return out
}

// wordCache memoises merge results per distinct pre-token; sharded so batch
// encoding on all cores does not serialise on one lock.
type wordCache struct {
	once   sync.Once
	seed   maphash.Seed
	shards [64]cacheShard
}

type cacheShard struct {
	mu sync.Mutex
	m  map[string][]int32
}

const cacheShardCap = 8192

func (c *wordCache) shard(key string) *cacheShard {
	c.once.Do(func() { c.seed = maphash.MakeSeed() })
	return &c.shards[maphash.String(c.seed, key)&63]
}

func (c *wordCache) get(key string) []int32 {
	if len(key) > 256 {
		return nil
	}
	s := c.shard(key)
	s.mu.Lock()
	v := s.m[key]
	s.mu.Unlock()
	return v
}

func (c *wordCache) put(key string, v []int32) {
	if len(key) > 256 {
		return
	}
	s := c.shard(key)
	s.mu.Lock()
	if s.m == nil || len(s.m) >= cacheShardCap {
		s.m = make(map[string][]int32, 256)
	}
	s.m[strings.Clone(key)] = v
	s.mu.Unlock()
}
