package tokenize

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
	"golang.org/x/text/unicode/norm"
)

// span is the byte range of the input that produced one byte of output.
type span struct{ start, end int32 }

// normalizer rewrites a text section before pre-tokenization. With align it
// also returns, for every output byte, the input range it came from; a nil
// alignment means the output is the input unchanged.
type normalizer interface {
	normalize(s string, align bool) (string, []span)
}

// alignedBuilder accumulates normalized output with its alignment.
type alignedBuilder struct {
	b     []byte
	spans []span
	align bool
}

func (a *alignedBuilder) add(s string, from span) {
	a.b = append(a.b, s...)
	if a.align {
		for range len(s) {
			a.spans = append(a.spans, from)
		}
	}
}

func (a *alignedBuilder) addRune(r rune, from span) {
	n := len(a.b)
	a.b = utf8.AppendRune(a.b, r)
	if a.align {
		for range len(a.b) - n {
			a.spans = append(a.spans, from)
		}
	}
}

// addIdentity copies s[from:to] unchanged, each character aligned with itself.
func (a *alignedBuilder) addIdentity(s string, from, to int) {
	for i := from; i < to; {
		_, size := utf8.DecodeRuneInString(s[i:to])
		a.add(s[i:i+size], span{int32(i), int32(i + size)})
		i += size
	}
}

func (a *alignedBuilder) result() (string, []span) {
	if !a.align {
		return string(a.b), nil
	}
	return string(a.b), a.spans
}

// composeSpans maps spans of a second step (over its input, the first step's
// output) back to the original input through the first step's spans.
func composeSpans(first, second []span, firstOutLen int) []span {
	if first == nil {
		return second
	}
	if second == nil {
		return first
	}
	out := make([]span, len(second))
	for i, s := range second {
		st, en := int(s.start), int(s.end)
		if st >= firstOutLen {
			st = firstOutLen - 1
		}
		if en <= st {
			en = st + 1
		}
		if en > firstOutLen {
			en = firstOutLen
		}
		if st < 0 {
			out[i] = span{}
			continue
		}
		out[i] = span{first[st].start, first[en-1].end}
	}
	return out
}

func identitySpans(s string) []span {
	out := make([]span, len(s))
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		for k := 0; k < size; k++ {
			out[i+k] = span{int32(i), int32(i + size)}
		}
		i += size
	}
	return out
}

// unicodeNorm is NFC/NFD/NFKC/NFKD from golang.org/x/text (sugarme v0.3.0's
// NFC decomposes instead of composing).
type unicodeNorm struct{ form norm.Form }

func (u unicodeNorm) normalize(s string, align bool) (string, []span) {
	if u.form.IsNormalString(s) {
		return s, nil
	}
	if !align {
		return u.form.String(s), nil
	}
	if out, spans, ok := alignedForm(u.form, s); ok {
		return out, spans
	}
	var it norm.Iter
	it.InitString(u.form, s)
	a := alignedBuilder{align: true, b: make([]byte, 0, len(s))}
	var inBuf [8]span
	for !it.Done() {
		start := it.Pos()
		seg := it.Next()
		// Within a segment, output character j comes from input character j
		// (the last one when the output is longer): a composed character
		// aligns with its first source character and the marks folded into it
		// align with nothing, as in HF's NormalizedString.
		in := inBuf[:0]
		for i := start; i < it.Pos(); {
			_, size := utf8.DecodeRuneInString(s[i:it.Pos()])
			in = append(in, span{int32(i), int32(i + size)})
			i += size
		}
		if len(in) == 0 {
			// A long decomposition (NFKC's "ﬁ" → "fi", "½" → "1⁄2") comes
			// out in segments that consume no input until its last one:
			// they belong to the character being decomposed.
			_, size := utf8.DecodeRuneInString(s[start:])
			in = append(in, span{int32(start), int32(start + size)})
		}
		j := 0
		for _, r := range string(seg) {
			a.addRune(r, in[min(j, len(in)-1)])
			j++
		}
	}
	return a.result()
}

// normChar is one character of a normalization in progress: change is
// what HF's unicode-normalization-alignments records, 1 for a character
// added by a decomposition, -n for one that absorbed n others.
type normChar struct {
	r      rune
	change int
	ccc    uint8
}

// alignedForm normalizes s the way HF's NormalizedString does (decompose
// each character, order the marks, compose) and aligns each output character
// as HF does: one with change ≤ 0 with the next input character, skipping the
// -change after it; an added one with the character before. So in
// "A\u030a\u0327" → "Å\u0327" the cedilla keeps its own offsets though the
// ring before it was folded into the A. ok is false when the result is not
// form's (invalid UTF-8, say); the caller then aligns per segment.
func alignedForm(form norm.Form, s string) (string, []span, bool) {
	decomp := norm.NFD
	if form == norm.NFKC || form == norm.NFKD {
		decomp = norm.NFKD
	}
	in := make([]span, 0, len(s))
	chars := make([]normChar, 0, len(s))
	for i := 0; i < len(s); {
		_, size := utf8.DecodeRuneInString(s[i:])
		in = append(in, span{int32(i), int32(i + size)})
		for k, r := range decomp.String(s[i : i+size]) {
			c := normChar{r: r, ccc: decomp.PropertiesString(string(r)).CCC()}
			if k > 0 {
				c.change = 1
			}
			chars = append(chars, c)
		}
		i += size
	}
	// Canonical ordering: stable sort of each run of marks by class.
	for i := 1; i < len(chars); i++ {
		for j := i; j > 0 && chars[j].ccc != 0 && chars[j-1].ccc > chars[j].ccc; j-- {
			chars[j], chars[j-1] = chars[j-1], chars[j]
		}
	}
	out := chars
	if form == norm.NFC || form == norm.NFKC {
		out = make([]normChar, 0, len(chars))
		starter, between, lastCCC := -1, false, uint8(0)
		for _, c := range chars {
			if starter >= 0 && (!between || lastCCC != 0 && lastCCC < c.ccc) {
				if p := norm.NFC.String(string(out[starter].r) + string(c.r)); utf8.RuneCountInString(p) == 1 {
					r, _ := utf8.DecodeRuneInString(p)
					out[starter].r, out[starter].change = r, out[starter].change+c.change-1
					continue
				}
			}
			if c.ccc == 0 {
				starter, between = len(out), false
			} else {
				between, lastCCC = true, c.ccc
			}
			out = append(out, c)
		}
	}
	a := alignedBuilder{align: true, b: make([]byte, 0, len(s))}
	cursor := 0
	for _, c := range out {
		if c.change > 0 {
			a.addRune(c.r, in[max(cursor-1, 0)])
			continue
		}
		if cursor >= len(in) {
			return "", nil, false
		}
		a.addRune(c.r, in[cursor])
		cursor += 1 - c.change
	}
	res, spans := a.result()
	if res != form.String(s) {
		return "", nil, false
	}
	return res, spans, true
}

// runeMapper applies a per-character rewrite; fn appends the replacement of r
// (possibly nothing) to the builder.
type runeMapper struct {
	fn func(a *alignedBuilder, r rune, from span)
}

func (m runeMapper) normalize(s string, align bool) (string, []span) {
	a := alignedBuilder{align: align, b: make([]byte, 0, len(s))}
	for i, r := range s {
		size := utf8.RuneLen(r)
		if r == utf8.RuneError {
			_, size = utf8.DecodeRuneInString(s[i:])
		}
		m.fn(&a, r, span{int32(i), int32(i + size)})
	}
	return a.result()
}

// lowerRune is Rust's char::to_lowercase: per character, with the one
// unconditional multi-character mapping (U+0130).
func lowerRune(a *alignedBuilder, r rune, from span) {
	if r == 'İ' {
		a.add("i\u0307", from)
		return
	}
	a.addRune(unicode.ToLower(r), from)
}

type sequenceNorm []normalizer

func (q sequenceNorm) normalize(s string, align bool) (string, []span) {
	var spans []span
	cur := s
	for _, n := range q {
		out, sp := n.normalize(cur, align)
		if align {
			if sp == nil && out != cur {
				sp = identitySpans(out) // defensive: should not happen
			}
			spans = composeSpans(spans, sp, len(cur))
		}
		cur = out
	}
	return cur, spans
}

type stripNorm struct{ left, right bool }

func (st stripNorm) normalize(s string, align bool) (string, []span) {
	lo, hi := 0, len(s)
	if st.left {
		lo = len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
	}
	if st.right {
		hi = lo + len(strings.TrimRightFunc(s[lo:], unicode.IsSpace))
	}
	if lo == 0 && hi == len(s) {
		return s, nil
	}
	if !align {
		return s[lo:hi], nil
	}
	sp := identitySpans(s)[lo:hi]
	return s[lo:hi], sp
}

type prependNorm struct{ prefix string }

func (p prependNorm) normalize(s string, align bool) (string, []span) {
	if s == "" {
		return s, nil
	}
	out := p.prefix + s
	if !align {
		return out, nil
	}
	_, first := utf8.DecodeRuneInString(s)
	sp := make([]span, 0, len(out))
	for range len(p.prefix) {
		sp = append(sp, span{0, int32(first)})
	}
	return out, append(sp, identitySpans(s)...)
}

// replaceNorm replaces a literal string or a regex (Oniguruma-like syntax via
// regexp2) with content.
type replaceNorm struct {
	literal string
	re      *regexp2.Regexp
	content string
}

func (r replaceNorm) normalize(s string, align bool) (string, []span) {
	matches := r.find(s)
	if len(matches) == 0 {
		return s, nil
	}
	a := alignedBuilder{align: align, b: make([]byte, 0, len(s))}
	prev := 0
	for _, m := range matches {
		a.addIdentity(s, prev, m[0])
		// HF's NormalizedString.replace aligns the replacement with the
		// last character it replaces ("  " → "▁" points at the second
		// space), not with the whole match.
		from := span{int32(m[0]), int32(m[1])}
		if m[1] > m[0] {
			_, size := utf8.DecodeLastRuneInString(s[m[0]:m[1]])
			from.start = int32(m[1] - size)
		}
		a.add(r.content, from)
		prev = m[1]
	}
	a.addIdentity(s, prev, len(s))
	return a.result()
}

func (r replaceNorm) find(s string) [][2]int {
	if r.re == nil {
		var out [][2]int
		if r.literal == "" {
			return nil
		}
		for i := 0; ; {
			j := strings.Index(s[i:], r.literal)
			if j < 0 {
				return out
			}
			out = append(out, [2]int{i + j, i + j + len(r.literal)})
			i += j + len(r.literal)
		}
	}
	return regexpMatches(r.re, s)
}

// bertNorm is BertNormalizer: clean control characters, space out CJK
// ideographs, optionally strip accents (NFD, drop Mn) and lowercase.
type bertNorm struct {
	cleanText, chinese, stripAccents, lowercase bool
}

func isBertControl(r rune) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return false
	}
	return bertTables().Control.has(r) // Cc, Cf, Co as HF's tables have them
}

// isCJK is HF's is_chinese_char, whose ranges skip U+2B820-U+2B91F
// (Google's BERT and transformers.js start that block at U+2B820).
func isCJK(r rune) bool {
	return (r >= 0x4E00 && r <= 0x9FFF) || (r >= 0x3400 && r <= 0x4DBF) ||
		(r >= 0x20000 && r <= 0x2A6DF) || (r >= 0x2A700 && r <= 0x2B73F) ||
		(r >= 0x2B740 && r <= 0x2B81F) || (r >= 0x2B920 && r <= 0x2CEAF) ||
		(r >= 0xF900 && r <= 0xFAFF) || (r >= 0x2F800 && r <= 0x2FA1F)
}

func (b bertNorm) normalize(s string, align bool) (string, []span) {
	var steps sequenceNorm
	if b.cleanText || b.chinese {
		steps = append(steps, runeMapper{fn: func(a *alignedBuilder, r rune, from span) {
			switch {
			case b.cleanText && (r == 0 || r == 0xFFFD || isBertControl(r)):
			case b.cleanText && unicode.IsSpace(r):
				a.add(" ", from)
			case b.chinese && isCJK(r):
				a.add(" ", from)
				a.addRune(r, from)
				a.add(" ", from)
			default:
				a.addRune(r, from)
			}
		}})
	}
	if b.lowercase {
		steps = append(steps, runeMapper{fn: lowerRune})
	}
	if b.stripAccents {
		steps = append(steps, unicodeNorm{norm.NFD}, runeMapper{fn: func(a *alignedBuilder, r rune, from span) {
			if !bertTables().Mark.has(r) { // Mn as HF's tables have it
				a.addRune(r, from)
			}
		}})
	}
	return steps.normalize(s, align)
}

type patternJSON struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	typ, err := typeOf(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "":
		return nil, nil
	case "NFC":
		return unicodeNorm{norm.NFC}, nil
	case "NFD":
		return unicodeNorm{norm.NFD}, nil
	case "NFKC":
		return unicodeNorm{norm.NFKC}, nil
	case "NFKD":
		return unicodeNorm{norm.NFKD}, nil
	case "Lowercase":
		return runeMapper{fn: lowerRune}, nil
	case "StripAccents":
		return runeMapper{fn: func(a *alignedBuilder, r rune, from span) {
			if !unicode.IsMark(r) {
				a.addRune(r, from)
			}
		}}, nil
	case "Strip":
		var j struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Strip: %w", err)
		}
		return stripNorm{j.Left, j.Right}, nil
	case "Prepend":
		var j struct {
			Prepend string `json:"prepend"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Prepend: %w", err)
		}
		return prependNorm{j.Prepend}, nil
	case "Replace":
		var j struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Replace: %w", err)
		}
		r := replaceNorm{content: j.Content}
		switch {
		case j.Pattern.String != nil:
			r.literal = *j.Pattern.String
		case j.Pattern.Regex != nil:
			if r.re, err = compileRegex(*j.Pattern.Regex); err != nil {
				return nil, fmt.Errorf("Replace: %w", err)
			}
		default:
			return nil, fmt.Errorf("Replace: pattern has neither String nor Regex")
		}
		return r, nil
	case "BertNormalizer":
		var j struct {
			CleanText    *bool `json:"clean_text"`
			Chinese      *bool `json:"handle_chinese_chars"`
			StripAccents *bool `json:"strip_accents"`
			Lowercase    *bool `json:"lowercase"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("BertNormalizer: %w", err)
		}
		or := func(p *bool, d bool) bool {
			if p == nil {
				return d
			}
			return *p
		}
		b := bertNorm{cleanText: or(j.CleanText, true), chinese: or(j.Chinese, true), lowercase: or(j.Lowercase, true)}
		b.stripAccents = or(j.StripAccents, b.lowercase)
		return b, nil
	case "Precompiled":
		var j struct {
			Charsmap *string `json:"precompiled_charsmap"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Precompiled: %w", err)
		}
		if j.Charsmap == nil {
			return nil, fmt.Errorf("Precompiled: no precompiled_charsmap")
		}
		p, err := parsePrecompiled(*j.Charsmap)
		if err != nil {
			return nil, fmt.Errorf("Precompiled: %w", err)
		}
		return p, nil
	case "Sequence":
		q, err := parseSequence(raw, "normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return sequenceNorm(q), nil
	default:
		return nil, fmt.Errorf("unsupported normalizer type %q (supported: NFC, NFD, NFKC, NFKD, Lowercase, StripAccents, Strip, Prepend, Replace, BertNormalizer, Precompiled, Sequence)", typ)
	}
}
