package tokenize

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// piece is one pre-token: the text the model sees, where it starts in the
// normalized section, and how many leading bytes were added by the
// pre-tokenizer (ByteLevel's add_prefix_space) and so have no source.
type piece struct {
	s     string
	off   int
	added int
}

// sub returns the part [a,b) of p as a new piece.
func (p piece) sub(a, b int) piece {
	return piece{s: p.s[a:b], off: p.off + max(a-p.added, 0), added: max(p.added-a, 0)}
}

// preTokenizer splits pieces further.
type preTokenizer interface {
	split(dst []piece, p piece) []piece
	byteLevel() bool
}

// matcher finds the delimiter (or content) matches of a Split pattern.
type matcher interface {
	find(s string, emit func(start, end int))
}

// splitBehavior says what becomes of matches (delimiters) when splitting.
type splitBehavior int

const (
	removed splitBehavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

func parseBehavior(s string) (splitBehavior, error) {
	switch strings.ToLower(s) {
	case "removed":
		return removed, nil
	case "isolated", "":
		return isolated, nil
	case "mergedwithprevious":
		return mergedWithPrevious, nil
	case "mergedwithnext":
		return mergedWithNext, nil
	case "contiguous":
		return contiguous, nil
	}
	return 0, fmt.Errorf("unknown split behavior %q", s)
}

// splitPre is the Split pre-tokenizer.
type splitPre struct {
	m        matcher
	behavior splitBehavior
	invert   bool
}

func (sp splitPre) byteLevel() bool { return false }

func (sp splitPre) split(dst []piece, p piece) []piece {
	return splitBy(dst, p, sp.m, sp.behavior, sp.invert)
}

// splitBy cuts p at the matches of m; with invert the matches are the
// content and the gaps between them the delimiters.
func splitBy(dst []piece, p piece, m matcher, behavior splitBehavior, invert bool) []piece {
	s := p.s
	// Fast path of the common configuration: isolated, every match and gap
	// becomes a piece in order.
	if behavior == isolated {
		prev := 0
		m.find(s, func(a, b int) {
			if a > prev {
				dst = append(dst, p.sub(prev, a))
			}
			if b > a {
				dst = append(dst, p.sub(a, b))
			}
			prev = b
		})
		if prev < len(s) {
			dst = append(dst, p.sub(prev, len(s)))
		}
		return dst
	}
	type seg struct {
		a, b  int
		delim bool
	}
	var segs []seg
	prev := 0
	m.find(s, func(a, b int) {
		if a > prev {
			segs = append(segs, seg{prev, a, invert})
		}
		if b > a {
			segs = append(segs, seg{a, b, !invert})
		}
		prev = b
	})
	if prev < len(s) {
		segs = append(segs, seg{prev, len(s), invert})
	}
	switch behavior {
	case removed:
		for _, g := range segs {
			if !g.delim {
				dst = append(dst, p.sub(g.a, g.b))
			}
		}
	case mergedWithPrevious:
		start := -1
		for _, g := range segs {
			if start < 0 {
				start = g.a
			}
			if g.delim {
				dst = append(dst, p.sub(start, g.b))
				start = -1
			}
		}
		if start >= 0 {
			dst = append(dst, p.sub(start, len(s)))
		}
	case mergedWithNext:
		start := -1
		for _, g := range segs {
			if g.delim {
				if start >= 0 {
					dst = append(dst, p.sub(start, g.a))
				}
				start = g.a
				continue
			}
			if start < 0 {
				start = g.a
			}
			dst = append(dst, p.sub(start, g.b))
			start = -1
		}
		if start >= 0 {
			dst = append(dst, p.sub(start, len(s)))
		}
	case contiguous:
		for i := 0; i < len(segs); {
			j := i + 1
			if segs[i].delim {
				for j < len(segs) && segs[j].delim {
					j++
				}
			}
			dst = append(dst, p.sub(segs[i].a, segs[j-1].b))
			i = j
		}
	}
	return dst
}

// regexMatcher runs a pattern through regexp2 (it has the lookahead that Go's
// regexp lacks); offsets come back in runes and are converted to bytes.
type regexMatcher struct{ re *regexp2.Regexp }

func (r regexMatcher) find(s string, emit func(a, b int)) {
	for _, m := range regexpMatches(r.re, s) {
		emit(m[0], m[1])
	}
}

// compileRegex compiles a tokenizer's pattern for regexp2, with the
// case-insensitive letters folded as Hugging Face's engine folds them
// (foldCaseLiterals).
func compileRegex(pattern string) (*regexp2.Regexp, error) {
	re, err := regexp2.Compile(foldCaseLiterals(pattern), regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("regex %q: %w", pattern, err)
	}
	return re, nil
}

func regexpMatches(re *regexp2.Regexp, s string) [][2]int {
	var out [][2]int
	var byteAt []int // rune index → byte offset
	m, err := re.FindStringMatch(s)
	for err == nil && m != nil {
		if byteAt == nil {
			byteAt = make([]int, 0, len(s)+1)
			for i := range s {
				byteAt = append(byteAt, i)
			}
			byteAt = append(byteAt, len(s))
		}
		a, b := byteAt[m.Index], byteAt[m.Index+m.Length]
		if b > a {
			out = append(out, [2]int{a, b})
		}
		m, err = re.FindNextMatch(m)
	}
	return out
}

// literalMatcher matches a fixed string (Split with {"String": ...}).
type literalMatcher struct{ lit string }

func (l literalMatcher) find(s string, emit func(a, b int)) {
	if l.lit == "" {
		return
	}
	for i := 0; ; {
		j := strings.Index(s[i:], l.lit)
		if j < 0 {
			return
		}
		emit(i+j, i+j+len(l.lit))
		i += j + len(l.lit)
	}
}

// byteLevelPre is the ByteLevel pre-tokenizer: optional prefix space,
// optional GPT-2 split, and the switch to byte symbols for the model.
type byteLevelPre struct {
	addPrefixSpace bool
	useRegex       bool
}

func (b byteLevelPre) byteLevel() bool { return true }

func (b byteLevelPre) split(dst []piece, p piece) []piece {
	if b.addPrefixSpace && !strings.HasPrefix(p.s, " ") {
		p = piece{s: " " + p.s, off: p.off, added: p.added + 1}
	}
	if !b.useRegex {
		return append(dst, p)
	}
	return splitBy(dst, p, gpt2Matcher{}, isolated, false)
}

type sequencePre []preTokenizer

func (q sequencePre) byteLevel() bool {
	for _, p := range q {
		if p.byteLevel() {
			return true
		}
	}
	return false
}

// pieceBufs recycles the intermediate piece lists of sequencePre: encoding
// then allocates almost nothing per document, which keeps the GC (and its
// scans of the large vocabulary maps) quiet.
var pieceBufs = sync.Pool{New: func() any { b := make([]piece, 0, 256); return &b }}

func (q sequencePre) split(dst []piece, p piece) []piece {
	curP, nextP := pieceBufs.Get().(*[]piece), pieceBufs.Get().(*[]piece)
	cur := append((*curP)[:0], p)
	next := (*nextP)[:0]
	for _, step := range q {
		next = next[:0]
		for _, c := range cur {
			next = step.split(next, c)
		}
		cur, next = next, cur
	}
	dst = append(dst, cur...)
	*curP, *nextP = cur[:0], next[:0]
	pieceBufs.Put(curP)
	pieceBufs.Put(nextP)
	return dst
}

// funcMatcher classifies runes: a run of runes for which in() holds is one
// match; with single, each such rune is its own match.
type funcMatcher struct {
	in     func(rune) bool
	single bool
}

func (f funcMatcher) find(s string, emit func(a, b int)) {
	start := -1
	for i, r := range s {
		if f.in(r) {
			if f.single {
				_, size := utf8.DecodeRuneInString(s[i:])
				emit(i, i+size)
				continue
			}
			if start < 0 {
				start = i
			}
		} else if start >= 0 {
			emit(start, i)
			start = -1
		}
	}
	if start >= 0 {
		emit(start, len(s))
	}
}

// isBertPunct is HF's is_bert_punc: ASCII punctuation or Unicode P* as
// HF's tables have it (bert_unicode.json).
func isBertPunct(r rune) bool {
	if r < 128 {
		return (r >= 33 && r <= 47) || (r >= 58 && r <= 64) || (r >= 91 && r <= 96) || (r >= 123 && r <= 126)
	}
	return bertTables().Punct.has(r)
}

// bertPre splits on whitespace (removed) and isolates punctuation.
type bertPre struct{}

func (bertPre) byteLevel() bool { return false }
func (bertPre) split(dst []piece, p piece) []piece {
	start := -1
	for i, r := range p.s {
		switch {
		case unicode.IsSpace(r):
			if start >= 0 {
				dst = append(dst, p.sub(start, i))
				start = -1
			}
		case isBertPunct(r):
			if start >= 0 {
				dst = append(dst, p.sub(start, i))
				start = -1
			}
			_, size := utf8.DecodeRuneInString(p.s[i:])
			dst = append(dst, p.sub(i, i+size))
		default:
			if start < 0 {
				start = i
			}
		}
	}
	if start >= 0 {
		dst = append(dst, p.sub(start, len(p.s)))
	}
	return dst
}

// whitespaceSplitPre splits on whitespace, dropping it.
type whitespaceSplitPre struct{}

func (whitespaceSplitPre) byteLevel() bool { return false }
func (whitespaceSplitPre) split(dst []piece, p piece) []piece {
	return splitBy(dst, p, funcMatcher{in: unicode.IsSpace}, removed, false)
}

// whitespacePre is `\w+|[^\w\s]+`.
type whitespacePre struct{}

func isWordRune(r rune) bool {
	return r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || unicode.Is(unicode.Pc, r)
}

func (whitespacePre) byteLevel() bool { return false }
func (whitespacePre) split(dst []piece, p piece) []piece {
	start, kind := -1, 0 // kind 1 word, 2 other
	for i, r := range p.s {
		k := 2
		if unicode.IsSpace(r) {
			k = 0
		} else if isWordRune(r) {
			k = 1
		}
		if k != kind && start >= 0 {
			dst = append(dst, p.sub(start, i))
			start = -1
		}
		if k != 0 && start < 0 {
			start = i
		}
		kind = k
	}
	if start >= 0 {
		dst = append(dst, p.sub(start, len(p.s)))
	}
	return dst
}

func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	typ, err := typeOf(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "":
		return nil, nil
	case "ByteLevel":
		var j struct {
			AddPrefixSpace *bool `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("ByteLevel: %w", err)
		}
		b := byteLevelPre{addPrefixSpace: true, useRegex: true}
		if j.AddPrefixSpace != nil {
			b.addPrefixSpace = *j.AddPrefixSpace
		}
		if j.UseRegex != nil {
			b.useRegex = *j.UseRegex
		}
		return b, nil
	case "Split":
		var j struct {
			Pattern  patternJSON `json:"pattern"`
			Behavior string      `json:"behavior"`
			Invert   bool        `json:"invert"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Split: %w", err)
		}
		sp := splitPre{invert: j.Invert}
		if sp.behavior, err = parseBehavior(j.Behavior); err != nil {
			return nil, fmt.Errorf("Split: %w", err)
		}
		switch {
		case j.Pattern.String != nil:
			sp.m = literalMatcher{*j.Pattern.String}
		case j.Pattern.Regex != nil:
			if fast, ok := knownPattern(*j.Pattern.Regex); ok {
				sp.m = fast
			} else {
				re, err := compileRegex(*j.Pattern.Regex)
				if err != nil {
					return nil, fmt.Errorf("Split: %w", err)
				}
				sp.m = regexMatcher{re}
			}
		default:
			return nil, fmt.Errorf("Split: pattern has neither String nor Regex")
		}
		if sp.invert && sp.behavior == isolated {
			// Inverted isolation keeps matches and gaps alike: same pieces.
			sp.invert = false
		}
		return sp, nil
	case "BertPreTokenizer":
		return bertPre{}, nil
	case "WhitespaceSplit":
		return whitespaceSplitPre{}, nil
	case "Whitespace":
		return whitespacePre{}, nil
	case "Digits":
		var j struct {
			Individual bool `json:"individual_digits"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Digits: %w", err)
		}
		return splitPre{m: funcMatcher{in: unicode.IsDigit, single: j.Individual}, behavior: isolated}, nil
	case "Punctuation":
		var j struct {
			Behavior string `json:"behavior"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Punctuation: %w", err)
		}
		b, err := parseBehavior(j.Behavior)
		if err != nil {
			return nil, fmt.Errorf("Punctuation: %w", err)
		}
		return splitPre{m: funcMatcher{in: isBertPunct, single: true}, behavior: b}, nil
	case "Metaspace":
		return parseMetaspace(raw)
	case "Sequence":
		q, err := parseSequence(raw, "pretokenizers", parsePreTokenizer)
		if err != nil {
			return nil, err
		}
		for i, p := range q {
			if _, ok := p.(metaspacePre); ok && i > 0 {
				// It would rewrite each piece the steps before it made.
				return nil, fmt.Errorf("Sequence[%d]: a Metaspace after other pre_tokenizers is not supported (only first)", i)
			}
		}
		if len(q) == 1 {
			return q[0], nil
		}
		return sequencePre(q), nil
	default:
		return nil, fmt.Errorf("unsupported pre_tokenizer type %q (supported: ByteLevel, Metaspace, Split, BertPreTokenizer, Whitespace, WhitespaceSplit, Digits, Punctuation, Sequence)", typ)
	}
}
