package rewardmodel

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// TaskKind selects how an answer is scored against the gold output.
type TaskKind string

const (
	Classification TaskKind = "classification" // exact match after trimming: 1 or 0
	Rating         TaskKind = "rating"         // 1 − |pred − gold| / 4 on a 1–5 scale
	Generation     TaskKind = "generation"     // ROUGE-L F1
)

// ParseTaskKind accepts the names above.
func ParseTaskKind(s string) (TaskKind, error) {
	switch k := TaskKind(strings.ToLower(strings.TrimSpace(s))); k {
	case Classification, Rating, Generation:
		return k, nil
	}
	return "", fmt.Errorf("task kind %q: want classification, rating or generation", s)
}

// ParseRating reads a 1–5 rating; ok is false for anything else. It is the
// RL task reward's reading (TaskReward), which keeps R_task in [0, 1]; LaMP's
// evaluation reads ratings with ParseLaMPRating instead.
func ParseRating(s string) (float64, bool) {
	v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(v) || v < 1 || v > 5 {
		return 0, false
	}
	return v, true
}

// ParseLaMPRating reads a rating as LaMP-3's official evaluator does: any
// number Python's float() accepts counts as it is, in the 1–5 range or not
// ("0", "-1", "10", "4.5"). As float() does, it strips surrounding
// whitespace (Unicode whitespace included), accepts Unicode decimal digits
// (full-width "２", Arabic-Indic "٣") and single underscores between
// digits ("1_0" is 10), and refuses hexadecimal ("0x1p1") and every other
// text. One deviation: float()'s non-finite values ("nan", "inf",
// "infinity", an overflowing "1e400") are refused too, so that one answer
// cannot make MAE or RMSE non-finite; the caller scores them as unparseable.
func ParseLaMPRating(s string) (float64, bool) {
	// As CPython's _PyUnicode_TransformDecimalAndSpaceToASCII: ASCII stays,
	// other whitespace becomes a space, other decimal digits their ASCII
	// digit, anything else is not part of a number.
	b := make([]byte, 0, len(s))
	for _, r := range s {
		switch {
		case r < 0x7f:
			b = append(b, byte(r))
		case unicode.Is(unicode.White_Space, r):
			b = append(b, ' ')
		case unicode.Is(unicode.Nd, r):
			b = append(b, '0'+decimalValue(r))
		default:
			return 0, false
		}
	}
	t := strings.Trim(string(b), " \t\n\v\f\r") // Py_ISSPACE: ASCII whitespace only
	if strings.IndexByte(t, '_') >= 0 {
		// _Py_string_to_number_with_underscores: each underscore between two digits.
		var ok bool
		if t, ok = dropUnderscores(t); !ok {
			return 0, false
		}
	}
	if !decimalFloatSyntax(t) {
		return 0, false
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, false
	}
	return v, true
}

// decimalValue is the digit value of a Unicode decimal digit (category Nd):
// Unicode encodes them in runs of ten, 0 to 9, which Go's table merges
// into ranges that each start at a 0.
func decimalValue(r rune) byte {
	for _, rg := range unicode.Nd.R16 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	for _, rg := range unicode.Nd.R32 {
		if r >= rune(rg.Lo) && r <= rune(rg.Hi) {
			return byte((r - rune(rg.Lo)) % 10)
		}
	}
	return 0
}

func isASCIIDigit(c byte) bool { return c >= '0' && c <= '9' }

// dropUnderscores removes underscores that stand between two digits; ok is
// false when any other underscore is present.
func dropUnderscores(s string) (string, bool) {
	out := make([]byte, 0, len(s))
	var prev byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '_' {
			if !isASCIIDigit(prev) {
				return "", false
			}
		} else {
			if prev == '_' && !isASCIIDigit(c) {
				return "", false
			}
			out = append(out, c)
		}
		prev = c
	}
	return string(out), prev != '_'
}

// decimalFloatSyntax reports whether s is [sign] (digits [. [digits]] |
// . digits) [(e|E) [sign] digits]: the finite numbers of Python's float().
func decimalFloatSyntax(s string) bool {
	i := 0
	digits := func() int {
		j := i
		for i < len(s) && isASCIIDigit(s[i]) {
			i++
		}
		return i - j
	}
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	n := digits()
	if i < len(s) && s[i] == '.' {
		i++
		n += digits()
	}
	if n == 0 {
		return false
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// TaskReward is R_task of an extracted answer (not the whole completion).
// An answer that cannot be parsed for the task scores 0.
func TaskReward(kind TaskKind, answer, gold string) float64 {
	switch kind {
	case Classification:
		if strings.TrimSpace(answer) == strings.TrimSpace(gold) && strings.TrimSpace(gold) != "" {
			return 1
		}
		return 0
	case Rating:
		p, ok := ParseRating(answer)
		g, gok := ParseRating(gold)
		if !ok || !gok {
			return 0
		}
		return 1 - math.Abs(p-g)/4
	case Generation:
		return RougeL(gold, answer).F
	}
	return 0
}
