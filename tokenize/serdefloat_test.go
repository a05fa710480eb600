package tokenize

import (
	"strconv"
	"testing"
)

// serdeFloat reads numbers as serde_json does: exact where the significand
// and its power of ten are (all of these), one ulp off the correctly
// rounded value for some 17-digit decimals (HF's Unigram scores), and
// errors on what is not a JSON number.
func TestSerdeFloat(t *testing.T) {
	for _, s := range []string{"0", "-0.5", "12", "1e-5", "-1.25E+3", "0.0001", "-9.5", "123456789"} {
		want, _ := strconv.ParseFloat(s, 64)
		if got, err := serdeFloat(s); err != nil || got != want {
			t.Errorf("serdeFloat(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	// 9091699600219727 is past 2^53: serde_json rounds it to a float64,
	// then divides by 1e15, and lands one ulp from strconv's value.
	got, _ := serdeFloat("-9.091699600219727")
	exact, _ := strconv.ParseFloat("-9.091699600219727", 64)
	if got == exact || got != float64(9091699600219727)/-1e15 {
		t.Errorf("serdeFloat(-9.091699600219727) = %v (strconv %v): want serde_json's two-step value", got, exact)
	}
	// Digits past u64's range are dropped (integer ones still scale).
	if got, err := serdeFloat("123456789012345678901234"); err != nil || got != float64(uint64(12345678901234567890))*1e4 {
		t.Errorf("a significand past u64: %v, %v", got, err)
	}
	for _, bad := range []string{"", "-", ".5", "1.", "1e", "x", "1e999"} {
		if _, err := serdeFloat(bad); err == nil {
			t.Errorf("serdeFloat(%q) gave no error", bad)
		}
	}
}
