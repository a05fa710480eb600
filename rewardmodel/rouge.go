package rewardmodel

import (
	"strings"
	"unicode/utf8"
)

// RougeScore is a precision/recall/F-measure triple.
type RougeScore struct{ Precision, Recall, F float64 }

func fScore(p, r float64) float64 {
	if p+r == 0 {
		return 0
	}
	return 2 * p * r / (p + r)
}

// RougeTokens tokenizes as the reference rouge-score package does without a
// stemmer (what LaMP's evaluation uses): lowercase, every run of characters
// outside [a-z0-9] is a separator.
//
// Lowercasing follows Python's str.lower(): it differs from Go's
// strings.ToLower only at U+0130 'İ', which Python lowers to "i" + U+0307
// (combining dot above) and Go to "i"; the dot then splits the word, so
// "İstanbul" is the tokens "i" and "stanbul", as rouge-score has it.
func RougeTokens(text string) []string {
	if strings.ContainsRune(text, '\u0130') {
		text = strings.ReplaceAll(text, "\u0130", "i\u0307")
	}
	text = strings.ToLower(text)
	var toks []string
	start := -1
	for i := 0; i < len(text); {
		r, size := utf8.DecodeRuneInString(text[i:])
		alnum := (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9')
		switch {
		case alnum && start < 0:
			start = i
		case !alnum && start >= 0:
			toks = append(toks, text[start:i])
			start = -1
		}
		i += size
	}
	if start >= 0 {
		toks = append(toks, text[start:])
	}
	return toks
}

// RougeN is ROUGE-N of a prediction against a target (clipped n-gram overlap).
func RougeN(target, prediction string, n int) RougeScore {
	t, p := ngrams(RougeTokens(target), n), ngrams(RougeTokens(prediction), n)
	tTotal, pTotal, overlap := 0, 0, 0
	for _, c := range t {
		tTotal += c
	}
	for g, c := range p {
		pTotal += c
		overlap += min(c, t[g])
	}
	return ratioScore(overlap, pTotal, tTotal)
}

// RougeL is ROUGE-L (longest common subsequence) of a prediction against a target.
func RougeL(target, prediction string) RougeScore {
	t, p := RougeTokens(target), RougeTokens(prediction)
	return ratioScore(lcs(t, p), len(p), len(t))
}

func ratioScore(overlap, predTotal, targetTotal int) RougeScore {
	var s RougeScore
	if predTotal > 0 {
		s.Precision = float64(overlap) / float64(predTotal)
	}
	if targetTotal > 0 {
		s.Recall = float64(overlap) / float64(targetTotal)
	}
	s.F = fScore(s.Precision, s.Recall)
	return s
}

func ngrams(toks []string, n int) map[string]int {
	out := map[string]int{}
	for i := 0; i+n <= len(toks); i++ {
		out[strings.Join(toks[i:i+n], " ")]++
	}
	return out
}

// lcs is the length of the longest common subsequence, in O(len(b)) memory.
func lcs(a, b []string) int {
	row := make([]int, len(b)+1)
	for i := 1; i <= len(a); i++ {
		prev := 0 // row[j-1] of the previous i
		for j := 1; j <= len(b); j++ {
			cur := row[j]
			if a[i-1] == b[j-1] {
				row[j] = prev + 1
			} else if row[j-1] > row[j] {
				row[j] = row[j-1]
			}
			prev = cur
		}
	}
	return row[len(b)]
}
