package rewardmodel

import (
	"math"
	"reflect"
	"testing"
)

// Python's str.lower() turns 'İ' (U+0130) into "i" + U+0307, and rouge-score's
// tokenizer splits on the combining dot: "İstanbul" is "i" and "stanbul".
// rouge-score 0.1.2 (no stemmer) on this pair: P 2/3, R 2/4, F 4/7.
func TestRougeDottedCapitalIAsPython(t *testing.T) {
	if got := RougeTokens("Protests in İstanbul"); !reflect.DeepEqual(got, []string{"protests", "in", "i", "stanbul"}) {
		t.Fatalf("tokens %q", got)
	}
	// Gold tokens: protests, in, i, stanbul (4); prediction: protests, in,
	// istanbul (3); 2 in common: P = 2/3, R = 2/4, F = 2PR/(P+R) = 4/7.
	r1 := RougeN("Protests in İstanbul", "protests in istanbul", 1)
	if math.Abs(r1.Precision-2.0/3) > 1e-12 || math.Abs(r1.Recall-0.5) > 1e-12 || math.Abs(r1.F-4.0/7) > 1e-12 {
		t.Fatalf("ROUGE-1 %+v, want P 2/3, R 1/2, F 4/7", r1)
	}
	if rl := RougeL("Protests in İstanbul", "protests in istanbul"); math.Abs(rl.F-4.0/7) > 1e-12 {
		t.Fatalf("ROUGE-L %+v, want F 4/7", rl)
	}
	// Go's own lowering of the other letters is Python's: 'I' and 'ı' unchanged.
	if got := RougeTokens("IBM ıs"); !reflect.DeepEqual(got, []string{"ibm", "s"}) {
		t.Fatalf("tokens %q", got)
	}
}
