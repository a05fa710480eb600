package tokenize

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sort"
	"strings"
	"sync"
)

// TrainOptions configures Train.
type TrainOptions struct {
	// Corpus documents; Reader, when set, is read line by line instead
	// (lines keep their "\n", as HF's file trainer does).
	Corpus []string
	Reader io.Reader
	// VocabSize counts special tokens, the 256 byte symbols and the merges.
	VocabSize int
	// SpecialTokens get ids 0..len-1 and become special added tokens.
	SpecialTokens []string
	// MinFrequency stops training when the best pair is rarer (default 0).
	MinFrequency int
}

// trainPipeline is the pipeline of trained tokenizers: NFC, the Qwen2 split
// (single digits, so numbers tokenize uniformly), byte-level symbols.
const trainPipeline = `{
  "normalizer": {"type": "NFC"},
  "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
    {"type": "Split", "pattern": {"Regex": ` + "%s" + `}, "behavior": "Isolated", "invert": false},
    {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]},
  "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
  "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
}`

// Train learns a byte-level BPE vocabulary with the Hugging Face BpeTrainer
// algorithm: count pre-tokenized words, then repeatedly merge the most
// frequent adjacent pair (ties: the pair of smaller ids), until VocabSize.
// The result saves as a tokenizer.json that HF tokenizers load.
func Train(opts TrainOptions) (*Tokenizer, error) {
	if opts.VocabSize <= len(opts.SpecialTokens)+256 {
		return nil, fmt.Errorf("train: vocab size %d leaves no room for merges after %d special tokens and 256 bytes",
			opts.VocabSize, len(opts.SpecialTokens))
	}
	pat, _ := json.Marshal(qwen2Pattern)
	pipeline := fmt.Sprintf(trainPipeline, pat)
	var parts map[string]json.RawMessage
	if err := json.Unmarshal([]byte(pipeline), &parts); err != nil {
		return nil, fmt.Errorf("train: pipeline: %w", err)
	}
	norm, err := parseNormalizer(parts["normalizer"])
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	pre, err := parsePreTokenizer(parts["pre_tokenizer"])
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	counts, err := countWords(opts, norm, pre)
	if err != nil {
		return nil, err
	}
	vocab, merges := learnMerges(counts, opts)

	var buf bytes.Buffer
	buf.WriteString(`{"version":"1.0","truncation":null,"padding":null,"added_tokens":[`)
	for i, s := range opts.SpecialTokens {
		if i > 0 {
			buf.WriteByte(',')
		}
		c, _ := json.Marshal(s)
		fmt.Fprintf(&buf, `{"id":%d,"content":%s,"single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}`, i, c)
	}
	buf.WriteString("],")
	for _, k := range []string{"normalizer", "pre_tokenizer", "post_processor", "decoder"} {
		fmt.Fprintf(&buf, "%q:%s,", k, compactJSON(parts[k]))
	}
	buf.WriteString(`"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,` +
		`"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{`)
	for id, tok := range vocab {
		if id > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(tok)
		fmt.Fprintf(&buf, "%s:%d", k, id)
	}
	buf.WriteString(`},"merges":[`)
	for i, m := range merges {
		if i > 0 {
			buf.WriteByte(',')
		}
		a, _ := json.Marshal(m[0])
		b, _ := json.Marshal(m[1])
		fmt.Fprintf(&buf, "[%s,%s]", a, b)
	}
	buf.WriteString("]}}\n")
	t, err := Parse(buf.Bytes(), nil)
	if err != nil {
		return nil, fmt.Errorf("train: the trained tokenizer does not load: %w", err)
	}
	t.config = trainedConfig(opts.SpecialTokens)
	return t, nil
}

func compactJSON(raw json.RawMessage) []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// countWords pre-tokenizes the corpus (in parallel) and counts each distinct
// byte-level word.
func countWords(opts TrainOptions, norm normalizer, pre preTokenizer) (map[string]int, error) {
	docs := make(chan string, 64)
	workers := runtime.GOMAXPROCS(0)
	results := make([]map[string]int, workers)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			local := map[string]int{}
			var pieces []piece
			for d := range docs {
				if norm != nil {
					d, _ = norm.normalize(d, false)
				}
				pieces = pre.split(pieces[:0], piece{s: d})
				for _, p := range pieces {
					local[p.s]++
				}
			}
			results[w] = local
		}(w)
	}
	var readErr error
	hasText := false // a document with more than whitespace
	if opts.Reader != nil {
		br := bufio.NewReaderSize(opts.Reader, 1<<20)
		for {
			line, err := br.ReadString('\n')
			if line != "" {
				hasText = hasText || strings.TrimSpace(line) != ""
				docs <- line
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				readErr = fmt.Errorf("train: read corpus: %w", err)
				break
			}
		}
	}
	for _, d := range opts.Corpus {
		hasText = hasText || strings.TrimSpace(d) != ""
		docs <- d
	}
	close(docs)
	wg.Wait()
	if readErr != nil {
		return nil, readErr
	}
	if !hasText {
		// Nothing to learn from: the result would be the byte alphabet alone.
		return nil, errors.New("train: the corpus holds no text (it is empty or whitespace only)")
	}
	total := results[0]
	for _, m := range results[1:] {
		for k, v := range m {
			total[k] += v
		}
	}
	return total, nil
}

type trainWord struct {
	syms  []int32
	count int64
}

type pairKey uint64

func mkPair(a, b int32) pairKey       { return pairKey(uint64(uint32(a))<<32 | uint64(uint32(b))) }
func (p pairKey) parts() (a, b int32) { return int32(uint32(p >> 32)), int32(uint32(p)) }

type pairEntry struct {
	pair  pairKey
	count int64
}

// pairHeap orders by count (high first), then by pair (small ids first).
type pairHeap []pairEntry

func (h pairHeap) less(i, j int) bool {
	if h[i].count != h[j].count {
		return h[i].count > h[j].count
	}
	return h[i].pair < h[j].pair
}

func (h *pairHeap) push(e pairEntry) {
	*h = append(*h, e)
	s := *h
	for i := len(s) - 1; i > 0; {
		p := (i - 1) / 2
		if !s.less(i, p) {
			break
		}
		s[i], s[p] = s[p], s[i]
		i = p
	}
}

func (h *pairHeap) pop() pairEntry {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s = s[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(s) && s.less(l, m) {
			m = l
		}
		if r < len(s) && s.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		s[i], s[m] = s[m], s[i]
		i = m
	}
	*h = s
	return top
}

// learnMerges is the BpeTrainer loop. It returns the vocabulary in id order
// (special tokens, the byte alphabet sorted by code point, merged tokens)
// and the merges.
func learnMerges(counts map[string]int, opts TrainOptions) ([]string, [][2]string) {
	vocab := append([]string(nil), opts.SpecialTokens...)
	ids := map[string]int32{}
	for i, s := range vocab {
		ids[s] = int32(i)
	}
	alphabet := make([]rune, 0, 256)
	for b := 0; b < 256; b++ {
		alphabet = append(alphabet, byteToRune[b])
	}
	sort.Slice(alphabet, func(i, j int) bool { return alphabet[i] < alphabet[j] })
	var byteSym [256]int32
	for _, r := range alphabet {
		s := string(r)
		if _, ok := ids[s]; !ok {
			ids[s] = int32(len(vocab))
			vocab = append(vocab, s)
		}
		byteSym[runeToByte[r]] = ids[s]
	}

	// Words in a fixed order so that training is deterministic.
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	words := make([]trainWord, len(keys))
	pairCounts := map[pairKey]int64{}
	where := map[pairKey][]int32{}
	for wi, k := range keys {
		syms := make([]int32, len(k))
		for i := 0; i < len(k); i++ {
			syms[i] = byteSym[k[i]]
		}
		c := int64(counts[k])
		words[wi] = trainWord{syms: syms, count: c}
		for i := 0; i+1 < len(syms); i++ {
			p := mkPair(syms[i], syms[i+1])
			pairCounts[p] += c
			if l := where[p]; len(l) == 0 || l[len(l)-1] != int32(wi) {
				where[p] = append(l, int32(wi))
			}
		}
	}
	h := &pairHeap{}
	for p, c := range pairCounts {
		if c > 0 {
			h.push(pairEntry{p, c})
		}
	}
	var merges [][2]string
	for len(vocab) < opts.VocabSize && len(*h) > 0 {
		top := h.pop()
		if cur := pairCounts[top.pair]; cur != top.count {
			if cur > 0 {
				h.push(pairEntry{top.pair, cur})
			}
			continue
		}
		if top.count < 1 || int64(opts.MinFrequency) > top.count {
			break
		}
		a, b := top.pair.parts()
		tok := vocab[a] + vocab[b]
		newID, exists := ids[tok]
		if !exists {
			newID = int32(len(vocab))
			ids[tok] = newID
			vocab = append(vocab, tok)
		}
		merges = append(merges, [2]string{vocab[a], vocab[b]})
		touched := map[pairKey]bool{}
		for _, wi := range where[top.pair] {
			w := &words[wi]
			syms := w.syms
			for i := 0; i+1 < len(syms); i++ {
				if syms[i] != a || syms[i+1] != b {
					continue
				}
				if i > 0 {
					pairCounts[mkPair(syms[i-1], a)] -= w.count
					p := mkPair(syms[i-1], newID)
					pairCounts[p] += w.count
					touched[p] = true
					if l := where[p]; len(l) == 0 || l[len(l)-1] != wi {
						where[p] = append(l, wi)
					}
				}
				syms[i] = newID
				syms = append(syms[:i+1], syms[i+2:]...)
				if i+1 < len(syms) {
					pairCounts[mkPair(b, syms[i+1])] -= w.count
					p := mkPair(newID, syms[i+1])
					pairCounts[p] += w.count
					touched[p] = true
					if l := where[p]; len(l) == 0 || l[len(l)-1] != wi {
						where[p] = append(l, wi)
					}
				}
			}
			w.syms = syms
		}
		delete(where, top.pair)
		delete(pairCounts, top.pair)
		for p := range touched {
			if c := pairCounts[p]; c > 0 {
				h.push(pairEntry{p, c})
			}
		}
	}
	return vocab, merges
}

// Save writes the tokenizer as tokenizer.json (atomically), including any
// tokens registered with AddTokens.
func (t *Tokenizer) Save(path string) error {
	b, err := t.MarshalJSON()
	if err != nil {
		return fmt.Errorf("save tokenizer %s: %w", path, err)
	}
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("save tokenizer %s: %w", path, err)
	}
	return nil
}

// trainedConfig gives a trained tokenizer ChatML and the usual roles of its
// special tokens: eos <|im_end|> (else <|endoftext|>), pad <|endoftext|>
// (else the first special token).
func trainedConfig(specials []string) *Config {
	has := map[string]bool{}
	for _, s := range specials {
		has[s] = true
	}
	c := &Config{ChatTemplate: chatMLJinja}
	for _, s := range []string{"<|im_end|>", "<|endoftext|>"} {
		if has[s] {
			c.EOS = s
			break
		}
	}
	switch {
	case has["<|endoftext|>"]:
		c.PAD = "<|endoftext|>"
	case len(specials) > 0:
		c.PAD = specials[0]
	}
	return c
}
