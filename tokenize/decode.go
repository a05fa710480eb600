package tokenize

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// decoder turns model tokens (strings) back into text pieces, like HF's
// decode_chain; the pieces are concatenated.
type decoder interface {
	decodeChain(tokens []string) []string
}

type byteLevelDecoder struct{}

func (byteLevelDecoder) decodeChain(tokens []string) []string {
	var buf []byte
	for _, t := range tokens {
		if raw, ok := byteLevelDecode(t); ok {
			buf = append(buf, raw...)
		} else { // not byte-level (e.g. an added token): its own UTF-8, as HF
			buf = append(buf, t...)
		}
	}
	return []string{lossyString(buf)}
}

// lossyString is String::from_utf8_lossy: each maximal subpart of an
// invalid sequence becomes one U+FFFD (a character cut after two of its
// three bytes gives one, not two), as Unicode's "substitution of maximal
// subparts" and Rust do.
func lossyString(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	var sb strings.Builder
	for len(b) > 0 {
		r, size := utf8.DecodeRune(b)
		if r == utf8.RuneError && size <= 1 {
			sb.WriteRune(utf8.RuneError)
			size = invalidPrefixLen(b)
		} else {
			sb.Write(b[:size])
		}
		b = b[size:]
	}
	return sb.String()
}

// invalidPrefixLen is the length of the maximal subpart at the start of b,
// which does not begin a valid character: a lead byte and the continuation
// bytes that could still have completed it (Unicode table 3-7), else 1.
func invalidPrefixLen(b []byte) int {
	n, lo, hi := 0, byte(0x80), byte(0xBF)
	switch c := b[0]; {
	case c >= 0xC2 && c <= 0xDF:
		n = 2
	case c == 0xE0:
		n, lo = 3, 0xA0
	case c == 0xED:
		n, hi = 3, 0x9F
	case c >= 0xE1 && c <= 0xEF:
		n = 3
	case c == 0xF0:
		n, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		n = 4
	case c == 0xF4:
		n, hi = 4, 0x8F
	default:
		return 1
	}
	i := 1
	for ; i < n && i < len(b); i++ {
		if b[i] < lo || b[i] > hi {
			break
		}
		lo, hi = 0x80, 0xBF
	}
	return i
}

type wordPieceDecoder struct {
	prefix  string
	cleanup bool
}

func (w wordPieceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		if i > 0 {
			if rest, ok := strings.CutPrefix(t, w.prefix); ok {
				t = rest
			} else {
				t = " " + t
			}
		}
		if w.cleanup {
			t = cleanupTokenization(t)
		}
		out[i] = t
	}
	return out
}

var cleanupReplacer = strings.NewReplacer(" .", ".", " ?", "?", " !", "!", " ,", ",", " ' ", "'",
	" n't", "n't", " 'm", "'m", " 's", "'s", " 've", "'ve", " 're", "'re")

func cleanupTokenization(s string) string { return cleanupReplacer.Replace(s) }

type sequenceDecoder []decoder

func (q sequenceDecoder) decodeChain(tokens []string) []string {
	for _, d := range q {
		tokens = d.decodeChain(tokens)
	}
	return tokens
}

type fuseDecoder struct{}

func (fuseDecoder) decodeChain(tokens []string) []string {
	return []string{strings.Join(tokens, "")}
}

type stripDecoder struct {
	content     string
	start, stop int
}

func (s stripDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	if s.content == "" {
		return append(out[:0], tokens...)
	}
	for i, t := range tokens {
		for n := 0; n < s.start && strings.HasPrefix(t, s.content); n++ {
			t = t[len(s.content):]
		}
		for n := 0; n < s.stop && strings.HasSuffix(t, s.content); n++ {
			t = t[:len(t)-len(s.content)]
		}
		out[i] = t
	}
	return out
}

type replaceDecoder struct{ from, to string }

func (r replaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		out[i] = strings.ReplaceAll(t, r.from, r.to)
	}
	return out
}

func parseDecoder(raw json.RawMessage) (decoder, error) {
	typ, err := typeOf(raw)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "":
		return nil, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "WordPiece":
		var j struct {
			Prefix  *string `json:"prefix"`
			Cleanup *bool   `json:"cleanup"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("WordPiece: %w", err)
		}
		w := wordPieceDecoder{prefix: "##", cleanup: true}
		if j.Prefix != nil {
			w.prefix = *j.Prefix
		}
		if j.Cleanup != nil {
			w.cleanup = *j.Cleanup
		}
		return w, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Metaspace":
		m, err := parseMetaspace(raw)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{m}, nil
	case "Strip":
		var j struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Strip: %w", err)
		}
		return stripDecoder{j.Content, j.Start, j.Stop}, nil
	case "Replace":
		var j struct {
			Pattern patternJSON `json:"pattern"`
			Content string      `json:"content"`
		}
		if err := decodeComponent(raw, &j); err != nil {
			return nil, fmt.Errorf("Replace: %w", err)
		}
		if j.Pattern.String == nil {
			return nil, fmt.Errorf("Replace: only String patterns are supported in decoders")
		}
		return replaceDecoder{*j.Pattern.String, j.Content}, nil
	case "Sequence":
		q, err := parseSequence(raw, "decoders", parseDecoder)
		if err != nil {
			return nil, err
		}
		return sequenceDecoder(q), nil
	default:
		return nil, fmt.Errorf("unsupported decoder type %q (supported: ByteLevel, ByteFallback, Metaspace, WordPiece, Fuse, Strip, Replace, Sequence)", typ)
	}
}
