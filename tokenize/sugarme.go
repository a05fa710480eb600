package tokenize

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	sm "github.com/sugarme/tokenizer"
	smnorm "github.com/sugarme/tokenizer/normalizer"
)

// This file plugs tagpr's components into github.com/sugarme/tokenizer's
// pipeline through its interfaces (normalizer.Normalizer, PreTokenizer,
// Model, Decoder), replacing the v0.3.0 parts that are wrong: the lookahead
// split regex (panics), NFC (decomposes), ByteLevel's ignored use_regex, BPE
// tie order, and added tokens (dropped or split), which are cut out before
// sugarme sees the text. Tokenizer.Encode runs the same components without
// sugarme's per-byte alignment bookkeeping, which is what makes it fast;
// TestSugarmePipeline holds both to the reference ids.

// SugarmePipeline is a sugarme/tokenizer Tokenizer assembled from this
// tokenizer's components.
type SugarmePipeline struct {
	t  *Tokenizer
	tk *sm.Tokenizer
	// rest encodes the sections after the first when their text change
	// differs (Metaspace's prepend_scheme "first"); else it is tk.
	rest *sm.Tokenizer
}

// SugarmePipeline builds the sugarme pipeline for t.
func (t *Tokenizer) SugarmePipeline() *SugarmePipeline {
	build := func(startsText bool) *sm.Tokenizer {
		tk := sm.NewTokenizer(sugarmeModel{t})
		if n := t.sectionNormalizer(startsText); n != nil {
			tk.WithNormalizer(sugarmeNormalizer{n})
		}
		if t.pre != nil {
			tk.WithPreTokenizer(sugarmePreTokenizer{t.pre})
		}
		if t.decoder != nil {
			tk.WithDecoder(sugarmeDecoder{t.decoder})
		}
		return tk
	}
	p := &SugarmePipeline{t: t, tk: build(true)}
	p.rest = p.tk
	if t.rewriter != nil {
		p.rest = build(false)
	}
	return p
}

// Tokenizer is the underlying sugarme tokenizer.
func (p *SugarmePipeline) Tokenizer() *sm.Tokenizer { return p.tk }

// Encode encodes text through sugarme (added tokens split out by tagpr).
func (p *SugarmePipeline) Encode(text string) ([]int64, error) {
	var ids []int64
	for _, sec := range p.t.addedIdx.split(nil, text) {
		if sec.added != nil {
			ids = append(ids, int64(sec.added.ID))
			continue
		}
		tk := p.tk
		if sec.start > 0 {
			tk = p.rest
		}
		enc, err := tk.EncodeSingle(text[sec.start:sec.end], false)
		if err != nil {
			return nil, fmt.Errorf("sugarme encode: %w", err)
		}
		for _, id := range enc.Ids {
			ids = append(ids, int64(id))
		}
	}
	return ids, nil
}

// sugarmeNormalizer adapts a normalizer, carrying sugarme's alignments
// (normalized byte → original range and back) through our spans.
type sugarmeNormalizer struct{ n normalizer }

func (a sugarmeNormalizer) Normalize(ns *smnorm.NormalizedString) (*smnorm.NormalizedString, error) {
	in := ns.GetNormalized()
	out, spans := a.n.normalize(in, true)
	if spans == nil {
		return ns, nil
	}
	prev := ns.Alignments()
	aligns := make([][]int, len(out))
	for i, s := range spans {
		st, en := int(s.start), int(s.end)
		switch {
		case len(prev) == 0:
			aligns[i] = []int{0, 0}
		case en <= st:
			aligns[i] = []int{prev[min(st, len(prev)-1)][0], prev[min(st, len(prev)-1)][0]}
		default:
			aligns[i] = []int{prev[st][0], prev[en-1][1]}
		}
	}
	orig := ns.GetOriginal()
	alignsOrig := make([][]int, len(orig))
	for i := range alignsOrig {
		alignsOrig[i] = []int{-1, -1}
	}
	for j, al := range aligns {
		for o := al[0]; o < al[1] && o < len(orig); o++ {
			if alignsOrig[o][0] < 0 {
				alignsOrig[o][0] = j
			}
			alignsOrig[o][1] = j + 1
		}
	}
	last := 0
	for i := range alignsOrig {
		if alignsOrig[i][0] < 0 { // removed characters map to an empty range
			alignsOrig[i] = []int{last, last}
		}
		last = alignsOrig[i][1]
	}
	return smnorm.NewNormalizedString(orig, out, aligns, alignsOrig, ns.Shift()), nil
}

// sugarmePreTokenizer adapts a pre-tokenizer: splits become slices of the
// NormalizedString (so offsets stay aligned); ByteLevel's byte mapping is
// left to the model.
type sugarmePreTokenizer struct{ p preTokenizer }

func (a sugarmePreTokenizer) PreTokenize(pts *sm.PreTokenizedString) (*sm.PreTokenizedString, error) {
	return pts.Split(func(_ int, ns *smnorm.NormalizedString) []sm.SplitIdx {
		s := ns.GetNormalized()
		var out []sm.SplitIdx
		for _, p := range a.p.split(nil, piece{s: s}) {
			end := p.off + len(p.s) - p.added
			sub := ns.Slice(smnorm.NewRange(p.off, end, smnorm.NormalizedTarget))
			if sub == nil {
				continue
			}
			if p.added > 0 {
				sub = sub.Prepend(p.s[:p.added])
			}
			out = append(out, sm.SplitIdx{Normalized: sub})
		}
		return out
	}), nil
}

// sugarmeModel adapts the model; token offsets are byte ranges of the
// pre-token.
type sugarmeModel struct{ t *Tokenizer }

func (a sugarmeModel) Tokenize(sequence string) ([]sm.Token, error) {
	ids, lens := a.t.model.encodeWord(nil, []int{}, sequence)
	toks := make([]sm.Token, len(ids))
	pos := 0
	for i, id := range ids {
		toks[i] = sm.NewToken(int(id), a.t.idToToken[id], []int{pos, pos + lens[i]})
		pos += lens[i]
	}
	return toks, nil
}

func (a sugarmeModel) TokenToId(token string) (int, bool) {
	id, ok := a.t.model.modelVocab()[token]
	return id, ok
}

func (a sugarmeModel) IdToToken(id int) (string, bool) {
	if id < 0 || id >= len(a.t.idToToken) || !a.t.hasID[id] {
		return "", false
	}
	return a.t.idToToken[id], true
}

func (a sugarmeModel) GetVocab() map[string]int { return a.t.model.modelVocab() }
func (a sugarmeModel) GetVocabSize() int        { return len(a.t.model.modelVocab()) }

func (a sugarmeModel) Save(dir string, prefixOpt ...string) error {
	name := "vocab.json"
	if len(prefixOpt) > 0 && prefixOpt[0] != "" {
		name = prefixOpt[0] + "-" + name
	}
	b, err := json.Marshal(a.GetVocab())
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, name), b, 0o644)
}

type sugarmeDecoder struct{ d decoder }

func (a sugarmeDecoder) DecodeChain(tokens []string) []string { return a.d.decodeChain(tokens) }
func (a sugarmeDecoder) Decode(tokens []string) string {
	return strings.Join(a.d.decodeChain(tokens), "")
}
