package datasets

import (
	"fmt"
	"slices"
	"testing"
)

// Scores must not depend on Go's random map order: rounding differences in
// the idf sum would reorder near-tied profile items from run to run, and with
// them every prompt and every training batch.
func TestBM25ScoresRepeatExactly(t *testing.T) {
	var docs []string
	for i := 0; i < 12; i++ {
		d := ""
		for j := 0; j < 30; j++ {
			d += fmt.Sprintf("w%d ", (i*17+j*7)%97)
		}
		docs = append(docs, d+"shared")
	}
	first := BM25Scores("w3 w14 shared w50", docs)
	for k := 0; k < 200; k++ {
		if got := BM25Scores("w3 w14 shared w50", docs); !slices.Equal(got, first) {
			t.Fatalf("call %d: scores %v, first call %v", k, got, first)
		}
	}
}

// Scoring is one pass over the profile plus one lookup per query word and
// item: each item is split into words once, not once per query word (a
// LaMP-5 abstract query of ~100 words over a profile of ~1,000 abstracts
// re-split 100,000 abstracts per question). A query 100 times longer may
// allocate a little more (the query's own words), never per item per word.
func TestBM25ScoresSplitEachItemOnce(t *testing.T) {
	var docs []string
	for i := 0; i < 200; i++ {
		docs = append(docs, fmt.Sprintf("w%d w%d w%d shared words here", i%13, i%29, i%7))
	}
	short := "w3"
	long := ""
	for j := 0; j < 100; j++ {
		long += fmt.Sprintf("w%d ", j%40)
	}
	a := testing.AllocsPerRun(5, func() { BM25Scores(short, docs) })
	b := testing.AllocsPerRun(5, func() { BM25Scores(long, docs) })
	if b-a > 10 {
		t.Fatalf("a 100-word query allocates %.0f more than a 1-word query over %d items (want the items split once, not once per query word)", b-a, len(docs))
	}
}
