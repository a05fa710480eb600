package tokenize

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// foldCaseLiterals rewrites the literal letters of a pattern's
// case-insensitive parts ((?i) and (?i:…)) whose Unicode case-fold orbit
// regexp2 does not cover. regexp2 compares case-insensitively by
// unicode.ToLower, so 's' never matches U+017F LATIN SMALL LETTER LONG S
// (ToLower('ſ') is 'ſ'), while Hugging Face tokenizers (Oniguruma) and the
// JavaScript reference fold ſ to s: on "'ſA" the contraction (?i:'s) matches
// there and "'ſ" is one piece. Such a letter becomes a class of its orbit
// ('s' → [sſ]); everything else is copied unchanged. Character classes are
// left alone (no tokenizer pattern folds case inside one).
func foldCaseLiterals(pattern string) string {
	var b strings.Builder
	ignore := []bool{false} // per open group: is case ignored
	for i := 0; i < len(pattern); {
		c := pattern[i]
		switch {
		case c == '\\':
			n := escapeLen(pattern, i)
			b.WriteString(pattern[i : i+n])
			i += n
		case c == '[':
			n := classLen(pattern, i)
			b.WriteString(pattern[i : i+n])
			i += n
		case c == '(':
			cur := ignore[len(ignore)-1]
			j := i + 1
			if j < len(pattern) && pattern[j] == '?' {
				if n := groupNameLen(pattern, j+1); n > 0 {
					ignore = append(ignore, cur)
					b.WriteString(pattern[i : j+1+n])
					i = j + 1 + n
					continue
				}
				if on, end, scoped, ok := groupFlags(pattern, j+1, cur); ok {
					b.WriteString(pattern[i:end])
					i = end
					if scoped {
						ignore = append(ignore, on)
					} else {
						ignore[len(ignore)-1] = on // (?i) holds to the end of the group
					}
					continue
				}
			}
			ignore = append(ignore, cur)
			b.WriteByte(c)
			i++
		case c == ')':
			if len(ignore) > 1 {
				ignore = ignore[:len(ignore)-1]
			}
			b.WriteByte(c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(pattern[i:])
			if orbit := extraFolds(r); ignore[len(ignore)-1] && orbit != "" {
				b.WriteString("[" + string(r) + orbit + "]")
			} else {
				b.WriteString(pattern[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// extraFolds returns the members of r's case-fold orbit that regexp2's
// ToLower comparison misses (those whose lower case differs from r's).
func extraFolds(r rune) string {
	if !unicode.IsLetter(r) {
		return ""
	}
	var extra []rune
	for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
		if unicode.ToLower(f) != unicode.ToLower(r) {
			extra = append(extra, f)
		}
	}
	return string(extra)
}

// escapeLen is the length of the escape at p[i] ('\'): \p{…}, \x{…} and
// \uXXXX whole, otherwise the backslash and one rune.
func escapeLen(p string, i int) int {
	if i+1 >= len(p) {
		return 1
	}
	switch p[i+1] {
	case 'p', 'P', 'x':
		if i+2 < len(p) && p[i+2] == '{' {
			if end := strings.IndexByte(p[i:], '}'); end > 0 {
				return end + 1
			}
		}
	case 'u':
		if i+6 <= len(p) {
			return 6
		}
	}
	_, size := utf8.DecodeRuneInString(p[i+1:])
	return 1 + size
}

// classLen is the length of the character class opening at p[i] ('['),
// nested classes and escapes included; a ']' right after '[' or '[^' is a
// member.
func classLen(p string, i int) int {
	j := i + 1
	if j < len(p) && p[j] == '^' {
		j++
	}
	if j < len(p) && p[j] == ']' {
		j++
	}
	for j < len(p) {
		switch p[j] {
		case '\\':
			j += escapeLen(p, j)
			continue
		case '[':
			j += classLen(p, j)
			continue
		case ']':
			return j + 1 - i
		}
		j++
	}
	return len(p) - i
}

// groupFlags reads the flags of "(?flags)" or "(?flags:" starting at p[j]
// (after "(?"): the new ignore-case state, where the construct ends, and
// whether it opens a group. ok is false for other "(?" constructs
// (lookarounds, named groups), which open a group with the current state.
func groupFlags(p string, j int, cur bool) (on bool, end int, scoped, ok bool) {
	on, neg := cur, false
	for k := j; k < len(p); k++ {
		switch c := p[k]; c {
		case '-':
			neg = true
		case 'i':
			on = !neg
		case 'm', 's', 'x', 'n', 'U':
		case ':':
			return on, k + 1, true, k > j
		case ')':
			return on, k + 1, false, k > j
		default:
			return cur, 0, false, false
		}
	}
	return cur, 0, false, false
}

// groupNameLen is the length of a group name "<name>" or "P<name>" at p[j]
// (after "(?"), or 0: names are not literals to fold.
func groupNameLen(p string, j int) int {
	k := j
	if k < len(p) && p[k] == 'P' {
		k++
	}
	if k+1 >= len(p) || p[k] != '<' || p[k+1] == '=' || p[k+1] == '!' {
		return 0
	}
	if end := strings.IndexByte(p[k:], '>'); end > 0 {
		return k + end + 1 - j
	}
	return 0
}
