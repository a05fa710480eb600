package tokenize

import "strings"

// byteToRune is GPT-2's bytes_to_unicode table: printable bytes stand for
// themselves, the rest are shifted to U+0100 and up so that every byte has a
// visible, non-space character.
var byteToRune [256]rune

// runeToByte inverts byteToRune; -1 marks characters outside the alphabet.
var runeToByte [512]int16

func init() {
	for i := range runeToByte {
		runeToByte[i] = -1
	}
	n := 0
	for b := 0; b < 256; b++ {
		if (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = rune(256 + n)
			n++
		}
		runeToByte[byteToRune[b]] = int16(b)
	}
}

// byteLevelEncode maps raw bytes to the byte-level alphabet.
func byteLevelEncode(raw string) string {
	var b strings.Builder
	b.Grow(len(raw) * 2)
	for i := 0; i < len(raw); i++ {
		b.WriteRune(byteToRune[raw[i]])
	}
	return b.String()
}

// byteLevelDecode maps a byte-level token back to raw bytes; ok is false when
// it contains a character outside the alphabet.
func byteLevelDecode(tok string) (string, bool) {
	buf := make([]byte, 0, len(tok))
	for _, r := range tok {
		if r < 0 || int(r) >= len(runeToByte) || runeToByte[r] < 0 {
			return "", false
		}
		buf = append(buf, byte(runeToByte[r]))
	}
	return string(buf), true
}
