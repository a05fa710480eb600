package rewardmodel

import (
	"math"
	"testing"
)

// ParseLaMPRating reads what Python's float() reads, as LaMP-3's official
// evaluator does (try: float(x)); the expected values are CPython 3.11's.
// Non-finite values are refused (the one documented deviation).
func TestParseLaMPRatingMatchesPythonFloat(t *testing.T) {
	ok := map[string]float64{
		"3": 3, "  4 ": 4, "\t5\n": 5, "-1": -1, "10": 10, "0": 0, "4.5": 4.5, "+2": 2, "-0": 0,
		"1_0": 10, "1e1_0": 1e10, "1_000": 1000, "0005": 5, "5.": 5, ".5": 0.5, "1E+1": 10, "1e-400": 0,
		"５": 5, "２": 2, "٣": 3, "٣.٥": 3.5, "１_０": 10, "٣_٣": 33, "𝟓": 5,
		"\u00a05\u3000": 5, "5\u0085": 5, "\u2003 3 \u2003": 3,
	}
	for s, want := range ok {
		got, parsed := ParseLaMPRating(s)
		if !parsed || got != want {
			t.Errorf("ParseLaMPRating(%q) = %v, %v; Python float() gives %v", s, got, parsed, want)
		}
	}
	for _, s := range []string{
		// float() raises ValueError on these: LaMP scores them as the farther extreme.
		"1__0", "_1", "1_", "1_.5", "1._5", "\x1c5", "\u200b5", "0x1p1", "0x10", "five", "", "  ", "4/5", "4 stars",
		"1 2", ".", "e5", "5e", "5e+", "--5", "+-5", "3\u0301", "①", "Ⅴ", "3.0.0", "\xff",
		// float() reads these as inf or nan: refused here so MAE and RMSE stay finite.
		"1e400", "-1e400", "nan", "-nan", "inf", "+Infinity", "INF",
	} {
		if v, parsed := ParseLaMPRating(s); parsed {
			t.Errorf("ParseLaMPRating(%q) = %v, want unparseable", s, v)
		}
	}
}

// The RL reward keeps its 1–5 reading: an out-of-range rating earns nothing.
func TestParseRatingKeepsRewardRange(t *testing.T) {
	for _, s := range []string{"0", "6", "-1", "10"} {
		if _, ok := ParseRating(s); ok {
			t.Errorf("ParseRating(%q) accepted", s)
		}
		if r := TaskReward(Rating, s, "3"); r != 0 {
			t.Errorf("TaskReward(rating, %q, 3) = %v, want 0", s, r)
		}
	}
	if r := TaskReward(Rating, "4", "3"); math.Abs(r-0.75) > 1e-12 {
		t.Errorf("TaskReward(rating, 4, 3) = %v", r)
	}
}
