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
