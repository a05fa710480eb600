package tokenize

import (
	"unicode"
	"unicode/utf8"
)

// The split patterns of the GPT-2, Llama-3 and Qwen2/3 families, matched by
// hand-written scanners: the same leftmost-first alternation and
// backtracking as the regex engines, an order of magnitude faster than
// regexp2. TestFastSplitMatchesRegexp2 and FuzzFastSplit hold them to
// regexp2 on the same patterns.
const (
	gpt2Pattern   = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

func knownPattern(p string) (matcher, bool) {
	switch p {
	case gpt2Pattern:
		return gpt2Matcher{}, true
	case llama3Pattern:
		return llamaMatcher{maxDigits: 3}, true
	case qwen2Pattern:
		return llamaMatcher{maxDigits: 1}, true
	}
	return nil, false
}

const (
	cLetter uint8 = 1 << iota
	cNumber
	cSpace
)

var asciiClass [128]uint8

func init() {
	for r := rune(0); r < 128; r++ {
		switch {
		case unicode.IsLetter(r):
			asciiClass[r] = cLetter
		case unicode.IsNumber(r):
			asciiClass[r] = cNumber
		case unicode.IsSpace(r):
			asciiClass[r] = cSpace
		}
	}
}

// classAt decodes the rune at s[i] and classifies it as \p{L}, \p{N}, \s
// (Unicode White_Space, as in Rust's regex and regexp2) or other.
func classAt(s string, i int) (rune, int, uint8) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1, asciiClass[c]
	}
	r, size := utf8.DecodeRuneInString(s[i:])
	switch {
	case unicode.IsLetter(r):
		return r, size, cLetter
	case unicode.IsNumber(r):
		return r, size, cNumber
	case unicode.IsSpace(r):
		return r, size, cSpace
	}
	return r, size, 0
}

// runEnd returns the end of the run of runes of class cls starting at i.
func runEnd(s string, i int, cls uint8) int {
	for i < len(s) {
		_, size, c := classAt(s, i)
		if c&cls == 0 {
			break
		}
		i += size
	}
	return i
}

// contraction returns the length of 's 't 're 've 'm 'll 'd after the
// apostrophe at s[i-1], or 0. caseless follows Rust's (?i), where 's' also
// matches U+017F.
func contraction(s string, i int, caseless bool) int {
	if i >= len(s) {
		return 0
	}
	lower := func(c byte) byte {
		if caseless && c >= 'A' && c <= 'Z' {
			return c + 32
		}
		return c
	}
	c := lower(s[i])
	switch c {
	case 's', 't', 'm', 'd':
		return 1
	case 'r', 'v', 'l':
		if i+1 < len(s) {
			want := byte('e')
			if c == 'l' {
				want = 'l'
			}
			if lower(s[i+1]) == want {
				return 2
			}
		}
	case 0xC5: // U+017F LATIN SMALL LETTER LONG S is C5 BF
		if caseless && i+1 < len(s) && s[i+1] == 0xBF {
			return 2
		}
	}
	return 0
}

// llamaMatcher is the Llama-3 (maxDigits 3) and Qwen2 (maxDigits 1) pattern.
type llamaMatcher struct{ maxDigits int }

func (m llamaMatcher) find(s string, emit func(a, b int)) {
	for i := 0; i < len(s); {
		r, size, c := classAt(s, i)
		// (?i:'s|'t|'re|'ve|'m|'ll|'d)
		if r == '\'' {
			if n := contraction(s, i+1, true); n > 0 {
				emit(i, i+1+n)
				i += 1 + n
				continue
			}
		}
		// [^\r\n\p{L}\p{N}]?\p{L}+
		if c == cLetter {
			j := runEnd(s, i, cLetter)
			emit(i, j)
			i = j
			continue
		}
		if c != cNumber && r != '\r' && r != '\n' && i+size < len(s) {
			if _, _, c2 := classAt(s, i+size); c2 == cLetter {
				j := runEnd(s, i+size, cLetter)
				emit(i, j)
				i = j
				continue
			}
		}
		// \p{N}{1,n}
		if c == cNumber {
			j := i
			for n := 0; n < m.maxDigits && j < len(s); n++ {
				_, sz, c2 := classAt(s, j)
				if c2 != cNumber {
					break
				}
				j += sz
			}
			emit(i, j)
			i = j
			continue
		}
		// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
		if j := otherRunStart(s, i, r, c); j >= 0 {
			k := runEndOther(s, j)
			for k < len(s) && (s[k] == '\r' || s[k] == '\n') {
				k++
			}
			emit(i, k)
			i = k
			continue
		}
		if c == cSpace {
			j, lastStart, lastNL := spaceRun(s, i)
			switch {
			case lastNL >= 0: // \s*[\r\n]+
				emit(i, lastNL+1)
				i = lastNL + 1
			case j == len(s): // \s+(?!\S) at the end
				emit(i, j)
				i = j
			case lastStart > i: // \s+(?!\S): all but the last space
				emit(i, lastStart)
				i = lastStart
			default: // \s+
				emit(i, j)
				i = j
			}
			continue
		}
		i += size
	}
}

// otherRunStart returns where [^\s\p{L}\p{N}]+ starts for ` ?[^\s\p{L}\p{N}]+`
// at i, or -1 when that alternative cannot match.
func otherRunStart(s string, i int, r rune, c uint8) int {
	if c == 0 {
		return i
	}
	if r == ' ' && i+1 < len(s) {
		if _, _, c2 := classAt(s, i+1); c2 == 0 {
			return i + 1
		}
	}
	return -1
}

func runEndOther(s string, i int) int {
	for i < len(s) {
		_, size, c := classAt(s, i)
		if c != 0 {
			break
		}
		i += size
	}
	return i
}

// spaceRun scans whitespace from i: its end, the start of its last rune, and
// the position of its last \r or \n (-1 if none).
func spaceRun(s string, i int) (end, lastStart, lastNL int) {
	lastNL = -1
	lastStart = i
	for end = i; end < len(s); {
		r, size, c := classAt(s, end)
		if c != cSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = end
		}
		lastStart = end
		end += size
	}
	return end, lastStart, lastNL
}

// gpt2Matcher is GPT-2's pattern (also ByteLevel's use_regex split).
type gpt2Matcher struct{}

func (gpt2Matcher) find(s string, emit func(a, b int)) {
	for i := 0; i < len(s); {
		r, size, c := classAt(s, i)
		if r == '\'' {
			if n := contraction(s, i+1, false); n > 0 {
				emit(i, i+1+n)
				i += 1 + n
				continue
			}
		}
		start := i
		cls := c
		if r == ' ' && i+1 < len(s) {
			_, _, c2 := classAt(s, i+1)
			if c2 == cLetter || c2 == cNumber {
				start, cls = i+1, c2
			}
		}
		if cls == cLetter || cls == cNumber {
			j := runEnd(s, start, cls)
			emit(i, j)
			i = j
			continue
		}
		if j := otherRunStart(s, i, r, c); j >= 0 {
			k := runEndOther(s, j)
			emit(i, k)
			i = k
			continue
		}
		if c == cSpace {
			j, lastStart, _ := spaceRun(s, i)
			switch {
			case j == len(s):
				emit(i, j)
				i = j
			case lastStart > i:
				emit(i, lastStart)
				i = lastStart
			default:
				emit(i, j)
				i = j
			}
			continue
		}
		i += size
	}
}
