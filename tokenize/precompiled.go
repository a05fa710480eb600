package tokenize

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"github.com/rivo/uniseg"
)

// precompiledNorm is the Precompiled normalizer: sentencepiece's
// normalization rules (nmt_nfkc and the like) as transformers converts them
// for XLM-R, T5, mBART…, run the way HF tokenizers runs them (the
// spm_precompiled crate and normalizers/precompiled.rs), which is not
// sentencepiece's own longest-match rewriting:
//
//   - the text is cut into extended grapheme clusters; a cluster under 6
//     bytes for which the trie has a rule is replaced whole by the rule of
//     its shortest prefix that has one ("ﬁ\u0301" → "fi": the accent goes
//     with the ligature);
//   - otherwise each character of the cluster is replaced by its own rule or
//     kept.
//
// The alignment is HF's NormalizedString.transform of the changes
// precompiled.rs records: a replacement's characters replace the replaced
// ones one for one (each aligned with the one it replaces alone, so "é" from
// "e\u0301" aligns with the "e"), extra ones align with the last replaced
// character, and a shorter replacement's missing characters are taken off by
// the character written last — the one before the replacement when it is
// empty ("™\x1e" → "TM": the M aligns with the \x1e). A removal before
// anything was written is not recorded at all, so the characters after it
// shift: in "\x1eab" → "ab" the a aligns with the \x1e and the b with the a.
//
// Clusters are uniseg's (Unicode 15.0) with rule GB9c of Unicode 15.1 added
// (conjunctContinues), as HF's unicode-segmentation cuts them; later
// Unicode changes to cluster properties are not followed.
type precompiledNorm struct {
	trie  []uint32 // darts-clone double array
	blob  string   // NUL-terminated replacements the trie's values point into
	ascii [utf8.RuneSelf]struct {
		repl string
		ok   bool
	}
}

// maxGraphemeRule is the length under which a whole grapheme cluster is
// looked up (precompiled.rs's grapheme.len() < 6).
const maxGraphemeRule = 6

func parsePrecompiled(charsmap string) (*precompiledNorm, error) {
	data, err := base64.StdEncoding.DecodeString(charsmap)
	if err != nil {
		return nil, fmt.Errorf("precompiled_charsmap: %w", err)
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("precompiled_charsmap: %d bytes, too short for its trie size", len(data))
	}
	size := binary.LittleEndian.Uint32(data)
	units := int64(size / 4)
	if units == 0 {
		return nil, errors.New("precompiled_charsmap: empty trie")
	}
	if units > int64(len(data)-4)/4 {
		return nil, fmt.Errorf("precompiled_charsmap: trie of %d bytes, but only %d follow", size, len(data)-4)
	}
	p := &precompiledNorm{trie: make([]uint32, units)}
	for i := range p.trie {
		p.trie[i] = binary.LittleEndian.Uint32(data[4+4*i:])
	}
	// Like spm_precompiled, what follows the whole units is the string
	// blob, a size that is not a multiple of 4 included.
	blob := data[4+4*units:]
	if !utf8.Valid(blob) {
		return nil, errors.New("precompiled_charsmap: normalized strings are not valid UTF-8")
	}
	p.blob = string(blob)
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("precompiled_charsmap: %w", err)
	}
	for c := 1; c < utf8.RuneSelf; c++ {
		p.ascii[c].repl, p.ascii[c].ok = p.transform(string(rune(c)))
	}
	return p, nil
}

func unitOffset(u uint32) int { return int(u>>10) << ((u & (1 << 9)) >> 6) }

// lookupValue is darts-clone's common prefix search stopped at its first
// result: the value of key's shortest prefix in the trie. Positions outside
// the array (a corrupt file; validate refuses those a lookup can reach)
// end the search.
func (p *precompiledNorm) lookupValue(key string) (int, bool) {
	t := p.trie
	pos := unitOffset(t[0])
	for i := 0; i < len(key); i++ {
		c := key[i]
		if c == 0 {
			return 0, false
		}
		pos ^= int(c)
		if pos >= len(t) {
			return 0, false
		}
		u := t[pos]
		if u&(1<<31|0xFF) != uint32(c) {
			return 0, false
		}
		pos ^= unitOffset(u)
		if u>>8&1 == 1 {
			if pos >= len(t) {
				return 0, false
			}
			return int(t[pos] & (1<<31 - 1)), true
		}
	}
	return 0, false
}

// entry is the NUL-terminated string at offset v of the blob; ok is false
// when v is not the start of a character in it.
func (p *precompiledNorm) entry(v int) (string, bool) {
	if v > len(p.blob) || v < len(p.blob) && !utf8.RuneStart(p.blob[v]) {
		return "", false
	}
	s := p.blob[v:]
	if end := strings.IndexByte(s, 0); end >= 0 {
		s = s[:end]
	}
	return s, true
}

// transform is spm_precompiled's Precompiled::transform: the replacement of
// chunk's shortest prefix that has a rule.
func (p *precompiledNorm) transform(chunk string) (string, bool) {
	v, ok := p.lookupValue(chunk)
	if !ok {
		return "", false
	}
	return p.entry(v)
}

// validate checks every rule a lookup can reach (keys of up to 5 bytes, the
// longest precompiled.rs looks up) points at a string of the blob, so that a
// corrupt charsmap fails here rather than misbehaving on some input (HF
// panics on those).
func (p *precompiledNorm) validate() error {
	t := p.trie
	// explored[pos]: the most key bytes still to come pos was explored for.
	explored := make(map[int]int)
	var walk func(pos, left int, key []byte) error
	walk = func(pos, left int, key []byte) error {
		if d, ok := explored[pos]; ok && d >= left {
			return nil
		}
		explored[pos] = left
		for c := 1; c < 256; c++ {
			child := pos ^ c
			if child >= len(t) || t[child]&(1<<31|0xFF) != uint32(c) {
				continue
			}
			k := append(key, byte(c))
			next := child ^ unitOffset(t[child])
			if t[child]>>8&1 == 1 {
				if next >= len(t) {
					return fmt.Errorf("rule for % x is outside the trie", k)
				}
				if _, ok := p.entry(int(t[next] & (1<<31 - 1))); !ok {
					return fmt.Errorf("rule for % x points outside the normalized strings", k)
				}
				continue // lookups stop at the first rule
			}
			if left > 1 {
				if err := walk(next, left-1, k); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(unitOffset(t[0]), maxGraphemeRule-1, make([]byte, 0, maxGraphemeRule))
}

func (p *precompiledNorm) normalize(s string, align bool) (string, []span) {
	var w *precompiledWriter
	// apply writes ch (one character, or a whole cluster) replaced by repl
	// when ok, else kept; the writer starts at the first change.
	apply := func(at int, ch, repl string, ok bool) {
		switch {
		case ok:
			if w == nil {
				w = &precompiledWriter{s: s, align: align, out: make([]byte, 0, len(s)+len(s)/4)}
				w.begin(at)
			}
			w.replace(ch, repl)
		case w != nil:
			w.keep(ch)
		}
	}
	state := -1
	for i := 0; i < len(s); {
		// A character alone in its grapheme cluster: an ASCII one followed
		// by another (CR LF aside), or one of the BMP that ends a cluster
		// it starts before a character that does not extend one.
		if c := s[i]; c < utf8.RuneSelf {
			if i+1 == len(s) || s[i+1] < utf8.RuneSelf && (c != '\r' || s[i+1] != '\n') {
				if r := &p.ascii[c]; r.ok {
					apply(i, s[i:i+1], r.repl, true)
					i++
				} else {
					// A run of them without rules (CR has one).
					j := i + 1
					for j < len(s) && s[j] < utf8.RuneSelf && !p.ascii[s[j]].ok && (j+1 == len(s) || s[j+1] < utf8.RuneSelf) {
						j++
					}
					if w != nil {
						w.keepRun(i, j-i)
					}
					i = j
				}
				state = -1
				continue
			}
		} else if r, size := utf8.DecodeRuneInString(s[i:]); graphemeFlags(r)&graphemeAlone != 0 {
			if n := i + size; n == len(s) || s[n] < utf8.RuneSelf || graphemeFlags(nextRune(s[n:]))&graphemeNoExtend != 0 {
				repl, ok := p.transform(s[i:n])
				apply(i, s[i:n], repl, ok)
				i = n
				state = -1
				continue
			}
		}
		var g string
		g, _, _, state = uniseg.FirstGraphemeClusterInString(s[i:], state)
		for i+len(g) < len(s) && conjunctContinues(g, s[i+len(g):]) {
			var more string
			more, _, _, state = uniseg.FirstGraphemeClusterInString(s[i+len(g):], -1)
			g = s[i : i+len(g)+len(more)]
		}
		if len(g) < maxGraphemeRule {
			if repl, ok := p.transform(g); ok {
				apply(i, g, repl, true)
				i += len(g)
				continue
			}
		}
		for j := 0; j < len(g); {
			_, size := utf8.DecodeRuneInString(g[j:])
			repl, ok := p.transform(g[j : j+size])
			apply(i+j, g[j:j+size], repl, ok)
			j += size
		}
		i += len(g)
	}
	if w == nil {
		return s, nil
	}
	return w.result()
}

func nextRune(s string) rune {
	r, _ := utf8.DecodeRuneInString(s)
	return r
}

// Grapheme flags of a BMP character (none outside it), as uniseg has them:
// graphemeAlone, a cluster it starts ends before any character but those
// that extend one (it is not Prepend, a Hangul jamo or syllable, …);
// graphemeNoExtend, it does not extend a cluster (not Extend, ZWJ or
// SpacingMark).
const (
	graphemeAlone uint8 = 1 << iota
	graphemeNoExtend
)

// graphemeBlocks holds the flags of the BMP by blocks of 256 characters,
// each worked out from uniseg when first needed.
var graphemeBlocks [256]atomic.Pointer[[256]uint8]

// graphemeProbes are characters of every Grapheme_Cluster_Break value but
// Extend, ZWJ and SpacingMark.
var graphemeProbes = []string{"a", "\r", "\n", "\x01", "\u0600", "\U0001F1E6", "\u1100", "\u1161", "\u11A8", "\uAC00", "\uAC01", "\U0001F600"}

func graphemeFlags(r rune) uint8 {
	if r < 0 || r > 0xFFFF {
		return 0 // not worked out
	}
	b := graphemeBlocks[r>>8].Load()
	if b == nil {
		b = new([256]uint8)
		for k := range b {
			c := r&^0xFF | rune(k)
			if !utf8.ValidRune(c) {
				continue
			}
			ch := string(c)
			alone := true
			for _, probe := range graphemeProbes {
				if g, _, _, _ := uniseg.FirstGraphemeClusterInString(ch+probe, -1); g != ch {
					alone = false
					break
				}
			}
			if alone {
				b[k] |= graphemeAlone
			}
			if g, _, _, _ := uniseg.FirstGraphemeClusterInString("a"+ch, -1); g == "a" {
				b[k] |= graphemeNoExtend
			}
		}
		graphemeBlocks[r>>8].Store(b)
	}
	return b[r&0xFF]
}

// precompiledWriter writes the normalized text and, with align, replays
// NormalizedString.transform over the changes precompiled.rs records: each
// written character with its change (0: replaces the next input character,
// 1: inserted, -n: replaces the next one and removes n more).
type precompiledWriter struct {
	s     string
	align bool
	out   []byte
	spans []span
	// cursor is the next input byte transform would replace; last the
	// input character before it ({0, 0} at the start).
	cursor int
	last   span
	// An inserted character is written when the next change comes, since a
	// removal right after it turns it into a replacing one; one written
	// with change ≤ 0 just removes more input.
	pend       string
	pendChange int
	pendState  int // 0: nothing written yet, 1: pend waiting, 2: last one written
}

// begin starts the output with s[:at] unchanged.
func (w *precompiledWriter) begin(at int) {
	w.out = append(w.out, w.s[:at]...)
	if !w.align {
		return
	}
	w.spans = make([]span, 0, cap(w.out))
	for i := 0; i < at; {
		_, size := utf8.DecodeRuneInString(w.s[i:at])
		w.last = span{int32(i), int32(i + size)}
		for range size {
			w.spans = append(w.spans, w.last)
		}
		i += size
	}
	w.cursor = at
	if at > 0 {
		w.pendState = 2
	}
}

func (w *precompiledWriter) keep(ch string) {
	if !w.align {
		w.out = append(w.out, ch...)
		return
	}
	w.push(ch, 0)
}

// keepRun keeps s[at:at+n], single-byte characters without rules.
func (w *precompiledWriter) keepRun(at, n int) {
	run := w.s[at : at+n]
	switch {
	case !w.align:
		w.out = append(w.out, run...)
	case w.pendState != 1 && w.cursor == at:
		// Each replaces itself.
		w.out = append(w.out, run...)
		for k := at; k < at+n; k++ {
			w.spans = append(w.spans, span{int32(k), int32(k + 1)})
		}
		w.cursor += n
		w.last = span{int32(w.cursor - 1), int32(w.cursor)}
		w.pendState = 2
	default:
		for k := range n {
			w.push(run[k:k+1], 0)
		}
	}
}

// replace records precompiled.rs's replace(old, repl): its characters
// replace old's one for one, the extra ones are inserted, and when repl is
// shorter, the last change (whichever character that was) removes the rest.
func (w *precompiledWriter) replace(old, repl string) {
	if !w.align {
		w.out = append(w.out, repl...)
		return
	}
	diff := utf8.RuneCountInString(repl) - utf8.RuneCountInString(old)
	n := utf8.RuneCountInString(repl)
	k := 0
	for j := 0; j < len(repl); k++ {
		_, size := utf8.DecodeRuneInString(repl[j:])
		change := 0
		if diff > 0 && k >= n-diff {
			change = 1
		}
		w.push(repl[j:j+size], change)
		j += size
	}
	if diff < 0 {
		switch w.pendState {
		case 1:
			w.pendChange += diff
		case 2:
			w.consume(-diff)
		}
	}
}

func (w *precompiledWriter) push(ch string, change int) {
	if w.pendState == 1 {
		w.write(w.pend, w.pendChange)
	}
	if change > 0 {
		w.pend, w.pendChange, w.pendState = ch, change, 1
		return
	}
	w.write(ch, change)
	w.pendState = 2
}

func (w *precompiledWriter) write(ch string, change int) {
	from := w.last
	if change > 0 {
		if w.cursor == 0 {
			from = span{}
		}
	} else if w.cursor < len(w.s) {
		w.consume(1)
		from = w.last
		w.consume(-change)
	}
	w.out = append(w.out, ch...)
	for range len(ch) {
		w.spans = append(w.spans, from)
	}
}

// consume moves the cursor over n input characters.
func (w *precompiledWriter) consume(n int) {
	for ; n > 0 && w.cursor < len(w.s); n-- {
		_, size := utf8.DecodeRuneInString(w.s[w.cursor:])
		w.last = span{int32(w.cursor), int32(w.cursor + size)}
		w.cursor += size
	}
}

func (w *precompiledWriter) result() (string, []span) {
	if w.pendState == 1 {
		w.write(w.pend, w.pendChange)
		w.pendState = 2
	}
	if !w.align {
		return string(w.out), nil
	}
	return string(w.out), w.spans
}

// conjunctContinues reports whether the grapheme cluster g goes on into
// rest by rule GB9c of Unicode 15.1 (which HF's unicode-segmentation
// follows and uniseg, at Unicode 15.0, does not): no break between an Indic
// consonant followed by a virama (with marks around it) and a consonant, as
// in "क्ष".
func conjunctContinues(g, rest string) bool {
	if next, _ := utf8.DecodeRuneInString(rest); !isInCBConsonant(next) {
		return false
	}
	linker := false
	for g != "" {
		r, size := utf8.DecodeLastRuneInString(g)
		switch {
		case isInCBLinker(r):
			linker = true
		case isInCBExtend(r):
		default:
			return linker && isInCBConsonant(r)
		}
		g = g[:len(g)-size]
	}
	return false
}

// isInCBLinker is Indic_Conjunct_Break=Linker: the viramas of Bengali,
// Devanagari, Gujarati, Malayalam, Oriya and Telugu.
func isInCBLinker(r rune) bool {
	switch r {
	case 0x094D, 0x09CD, 0x0ACD, 0x0B4D, 0x0C4D, 0x0D4D:
		return true
	}
	return false
}

// isInCBExtend is Indic_Conjunct_Break=Extend as HF's segmentation has it:
// Grapheme_Cluster_Break Extend (Grapheme_Extend, emoji modifiers) or ZWJ,
// but not ZWNJ (or a linker, tested first).
func isInCBExtend(r rune) bool {
	if r == '\u200d' {
		return true
	}
	return r != '\u200c' && (unicode.In(r, unicode.Mn, unicode.Me, unicode.Other_Grapheme_Extend) || r >= 0x1F3FB && r <= 0x1F3FF)
}

// inCBConsonants is Indic_Conjunct_Break=Consonant (Unicode 15.1), the
// consonants of the scripts above.
var inCBConsonants = [][2]rune{
	{0x0915, 0x0939}, {0x0958, 0x095F}, {0x0978, 0x097F},
	{0x0995, 0x09A8}, {0x09AA, 0x09B0}, {0x09B2, 0x09B2}, {0x09B6, 0x09B9}, {0x09DC, 0x09DD}, {0x09DF, 0x09DF}, {0x09F0, 0x09F1},
	{0x0A95, 0x0AA8}, {0x0AAA, 0x0AB0}, {0x0AB2, 0x0AB3}, {0x0AB5, 0x0AB9}, {0x0AF9, 0x0AF9},
	{0x0B15, 0x0B28}, {0x0B2A, 0x0B30}, {0x0B32, 0x0B33}, {0x0B35, 0x0B39}, {0x0B5C, 0x0B5D}, {0x0B5F, 0x0B5F}, {0x0B71, 0x0B71},
	{0x0C15, 0x0C28}, {0x0C2A, 0x0C39}, {0x0C58, 0x0C5A},
	{0x0D15, 0x0D3A},
}

func isInCBConsonant(r rune) bool {
	if r < 0x0915 || r > 0x0D3A {
		return false
	}
	for _, rg := range inCBConsonants {
		if r >= rg[0] && r <= rg[1] {
			return true
		}
	}
	return false
}
