package datasets

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
)

// StripPython trims s as Python's str.strip() does, which LaMP's evaluator
// applies to answers and golds: the white space strings.TrimSpace trims and
// the separators U+001C–U+001F, which Python counts as white space too.
func StripPython(s string) string {
	return strings.TrimFunc(s, func(r rune) bool { return unicode.IsSpace(r) || (r >= 0x1c && r <= 0x1f) })
}

// CheckGolds checks a task's golds before any is used: a classification
// gold must be one of labels (%q-quoted in the error; no labels: any gold),
// a rating gold a number LaMP's evaluator reads (ParseLaMPRating); a
// generation gold is any text. ids[i] names golds[i]. The error names the
// first bad gold and its id and, when every gold fits another task
// (LaMP-2N's categories given as LaMP-2M, say), that task and its --task
// flag. LaMP import, the run's data stage and eval share it, so a gold eval
// would refuse is refused when it is read.
func CheckGolds(kind TaskKind, labels, ids, golds []string) error {
	trimmed := make([]string, len(golds))
	for i, g := range golds {
		trimmed[i] = StripPython(g)
	}
	switch kind {
	case Classification:
		if len(labels) == 0 {
			return nil
		}
		index := map[string]bool{}
		for _, l := range labels {
			index[l] = true
		}
		for i, g := range trimmed {
			if !index[g] {
				return fmt.Errorf("gold %q of %s is not one of the labels %q%s", golds[i], ids[i], labels, otherTaskHint(kind, labels, trimmed))
			}
		}
	case Rating:
		for i, g := range trimmed {
			if _, ok := ParseLaMPRating(g); !ok {
				what := "not a number"
				if f, err := strconv.ParseFloat(g, 64); math.IsInf(f, 0) || (err == nil && math.IsNaN(f)) {
					what = "not a finite number"
				}
				return fmt.Errorf("gold %q of %s is %s (LaMP-3 golds are ratings, read with Python's float())%s", golds[i], ids[i], what, otherTaskHint(kind, labels, trimmed))
			}
		}
	}
	return nil
}

// otherTaskHint names the tasks whose golds these all are, when the task
// given is not one of them: every gold a label of another classification
// task, or every gold a number (a rating task).
func otherTaskHint(kind TaskKind, labels []string, golds []string) string {
	var names, flags []string
	for _, t := range Tasks() {
		fits := false
		switch t.Kind {
		case Classification:
			if kind == Classification && slices.Equal(t.Labels, labels) {
				continue
			}
			set := map[string]bool{}
			for _, l := range t.Labels {
				set[l] = true
			}
			fits = len(set) > 0
			for _, g := range golds {
				fits = fits && set[g]
			}
		case Rating:
			if kind == Rating {
				continue
			}
			fits = true
			for _, g := range golds {
				_, ok := ParseLaMPRating(g)
				fits = fits && ok
			}
		}
		if fits {
			names = append(names, t.Name)
			flags = append(flags, "--task "+strings.TrimPrefix(t.Name, "LaMP_"))
		}
	}
	if len(names) == 0 {
		return ""
	}
	return fmt.Sprintf("; every gold fits %s: use %s", strings.Join(names, " or "), strings.Join(flags, " or "))
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
