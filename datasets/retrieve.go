package datasets

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
)

// BM25 parameters as in rank_bm25's BM25Okapi, which LaMP uses.
const (
	bm25K1      = 1.5
	bm25B       = 0.75
	bm25Epsilon = 0.25
)

// BM25Scores scores each document against the query with Okapi BM25 over
// whitespace tokens, as rank_bm25.BM25Okapi does (LaMP's retriever): idf =
// ln((N−n+0.5)/(n+0.5)), and an idf below zero is replaced by ε·(mean idf).
func BM25Scores(query string, docs []string) []float64 {
	n := len(docs)
	scores := make([]float64, n)
	if n == 0 {
		return scores
	}
	tf := make([]map[string]int, n)
	df := map[string]int{}
	// Words in first-seen order: sums over the vocabulary run in this order
	// (as rank_bm25's insertion-ordered dicts do), never in Go's random map
	// order, whose rounding differences reorder near-tied documents from one
	// process to the next.
	var vocab []string
	total := 0
	dl := make([]float64, n) // each document's length in words, counted once
	for i, d := range docs {
		words := strings.Fields(d)
		total += len(words)
		dl[i] = float64(len(words))
		tf[i] = make(map[string]int, len(words))
		for _, w := range words {
			if tf[i][w] == 0 {
				if df[w] == 0 {
					vocab = append(vocab, w)
				}
				df[w]++
			}
			tf[i][w]++
		}
	}
	avgdl := float64(total) / float64(n)
	idf := make(map[string]float64, len(df))
	sum := 0.0
	var negative []string
	for _, w := range vocab {
		c := df[w]
		v := math.Log(float64(n)-float64(c)+0.5) - math.Log(float64(c)+0.5)
		idf[w] = v
		sum += v
		if v < 0 {
			negative = append(negative, w)
		}
	}
	eps := bm25Epsilon * sum / float64(len(idf))
	for _, w := range negative {
		idf[w] = eps
	}
	for _, q := range strings.Fields(query) {
		v := idf[q]
		for i := range docs {
			f := float64(tf[i][q])
			if avgdl > 0 {
				scores[i] += v * f * (bm25K1 + 1) / (f + bm25K1*(1-bm25B+bm25B*dl[i]/avgdl))
			}
		}
	}
	return scores
}

// TopKBM25 returns the indices of the k profile items that best match the
// example's query (Task.Query of the input against Task.CorpusText of each item),
// best first; ties keep profile order.
func TopKBM25(t *Task, e *Example, k int) []int {
	docs := make([]string, len(e.Profile))
	for i := range e.Profile {
		docs[i] = t.CorpusText(&e.Profile[i])
	}
	scores := BM25Scores(t.Query(e.Input), docs)
	idx := make([]int, len(docs))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	return idx[:min(k, len(idx))]
}

// TopKRecent returns the indices of the k most recent profile items by date,
// newest first. Dates compare as dash-separated integers ("2019-3-7" < "2019-10-1"),
// as LaMP does; undated items count as oldest; ties keep profile order.
func TopKRecent(e *Example, k int) []int {
	idx := make([]int, len(e.Profile))
	keys := make([][]int, len(e.Profile))
	for i := range idx {
		idx[i] = i
		if e.Profile[i].HasDate {
			keys[i] = dateKey(e.Profile[i].Date)
		}
	}
	sort.SliceStable(idx, func(a, b int) bool { return lessKey(keys[idx[b]], keys[idx[a]]) })
	return idx[:min(k, len(idx))]
}

func dateKey(s string) []int {
	parts := strings.FieldsFunc(s, func(r rune) bool { return r == '-' || r == '/' || r == ' ' || r == 'T' || r == ':' })
	key := make([]int, 0, len(parts))
	for _, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil {
			break
		}
		key = append(key, v)
	}
	return key
}

// lessKey orders date keys; nil (undated) sorts first.
func lessKey(a, b []int) bool {
	for i := 0; i < len(a) && i < len(b); i++ {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return len(a) < len(b)
}

// Retrieval names how a prompt picks profile items.
type Retrieval string

const (
	ByBM25    Retrieval = "bm25"    // most similar to the task's query first
	ByRecency Retrieval = "recency" // newest first
)

// SelectProfile returns the k profile items a prompt should show (all of them
// when k ≤ 0 or k ≥ the profile size, in profile order).
func SelectProfile(t *Task, e *Example, k int, by Retrieval) ([]ProfileItem, error) {
	if k <= 0 || k >= len(e.Profile) {
		return e.Profile, nil
	}
	var idx []int
	switch by {
	case ByBM25:
		idx = TopKBM25(t, e, k)
	case ByRecency:
		idx = TopKRecent(e, k)
	default:
		return nil, fmt.Errorf("retrieval %q: want bm25 or recency", by)
	}
	out := make([]ProfileItem, len(idx))
	for i, j := range idx {
		out[i] = e.Profile[j]
	}
	return out, nil
}
