package tokenize

import (
	"fmt"
	"math"
	"strconv"
	"sync"
)

// serdeFloat parses a JSON number the way serde_json (without its
// float_roundtrip feature, as HF tokenizers builds it) does: the digits as a
// u64 significand (digits past its range ignored), converted to float64 and
// then multiplied or divided by one power of ten. That is not always the
// correctly rounded value: for 17-digit decimals it can be one ulp off. HF's
// Unigram scores are read this way, and where two segmentations tie to the
// last bit that ulp decides which one HF picks, so tagpr reads them alike.
func serdeFloat(s string) (float64, error) {
	i, neg := 0, false
	if i < len(s) && s[i] == '-' {
		neg, i = true, i+1
	}
	var sig uint64
	exp := 0
	overflow := false
	digit := func(c byte) {
		d := uint64(c - '0')
		if overflow || sig > (math.MaxUint64-d)/10 {
			overflow = true
			return
		}
		sig = sig*10 + d
	}
	start := i
	for i < len(s) && s[i] >= '0' && s[i] <= '9' {
		if overflow {
			exp++ // integer digits past the significand still count
		} else {
			digit(s[i])
			if overflow {
				exp++
			}
		}
		i++
	}
	if i == start {
		return 0, fmt.Errorf("number %q", s)
	}
	if i < len(s) && s[i] == '.' {
		i++
		fstart := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if !overflow {
				digit(s[i])
				if !overflow {
					exp--
				}
			}
			i++
		}
		if i == fstart {
			return 0, fmt.Errorf("number %q", s)
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		e, err := strconv.Atoi(s[i+1:])
		if err != nil {
			return 0, fmt.Errorf("number %q", s)
		}
		exp += e
		i = len(s)
	}
	if i != len(s) {
		return 0, fmt.Errorf("number %q", s)
	}
	f := float64(sig)
	for {
		a := exp
		if a < 0 {
			a = -a
		}
		if a < len(pow10()) {
			if exp >= 0 {
				f *= pow10()[a]
			} else {
				f /= pow10()[a]
			}
			break
		}
		if f == 0 {
			break
		}
		if exp >= 0 {
			return 0, fmt.Errorf("number %q out of range", s)
		}
		f /= 1e308
		exp += 308
	}
	if math.IsInf(f, 0) {
		return 0, fmt.Errorf("number %q out of range", s)
	}
	if neg {
		f = -f
	}
	return f, nil
}

// pow10 is serde_json's POW10 table: 1e0 … 1e308, each correctly rounded.
var pow10 = sync.OnceValue(func() []float64 {
	t := make([]float64, 309)
	for k := range t {
		t[k], _ = strconv.ParseFloat("1e"+strconv.Itoa(k), 64)
	}
	return t
})
