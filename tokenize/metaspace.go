package tokenize

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"
)

// prependScheme says where Metaspace writes its replacement before a
// section: every section, only the one at the start of the text, or none.
type prependScheme int

const (
	prependAlways prependScheme = iota
	prependFirst
	prependNever
)

// metaspacePre is the Metaspace pre-tokenizer of sentencepiece-style
// tokenizers (Mistral, Llama 2 converted with legacy=false): spaces become
// the replacement ("▁"), which is also written before a section that does
// not begin with it, and with split the text is cut before each
// replacement. The rewriting happens per section (the text between added
// tokens), so prependFirst needs to know whether a section starts the text:
// Encode calls rewrite with that before split.
type metaspacePre struct {
	replacement string
	prepend     prependScheme
	splitAt     bool
}

func (metaspacePre) byteLevel() bool { return false }

// rewrite is Metaspace's text change, with spans (nil: identity) composed as
// a normalizer's: each replacement aligned with the space it replaces, a
// prepended one with the section's first character, as HF's
// NormalizedString.prepend aligns it.
func (m metaspacePre) rewrite(s string, spans []span, startsText, align bool) (string, []span) {
	steps := sequenceNorm{replaceNorm{literal: " ", content: m.replacement}}
	if m.prepend == prependAlways || m.prepend == prependFirst && startsText {
		steps = append(steps, metaspacePrepend{m.replacement})
	}
	out, sp := steps.normalize(s, align)
	if !align {
		return out, nil
	}
	if sp == nil && out != s {
		sp = identitySpans(out)
	}
	return out, composeSpans(spans, sp, len(s))
}

// metaspacePrepend writes the replacement before a text that does not
// already begin with it.
type metaspacePrepend struct{ replacement string }

func (p metaspacePrepend) normalize(s string, align bool) (string, []span) {
	if strings.HasPrefix(s, p.replacement) {
		return s, nil
	}
	return prependNorm{p.replacement}.normalize(s, align)
}

func (m metaspacePre) split(dst []piece, p piece) []piece {
	if !m.splitAt {
		return append(dst, p)
	}
	return splitBy(dst, p, literalMatcher{m.replacement}, mergedWithNext, false)
}

// sectionRewriter is a pre-tokenizer that changes the text of a section
// before splitting it (Metaspace).
type sectionRewriter interface {
	rewrite(s string, spans []span, startsText, align bool) (string, []span)
}

// rewrittenNorm is a section's whole text change: the normalizer's (nil for
// none), then the pre-tokenizer's rewrite.
type rewrittenNorm struct {
	n          normalizer
	rw         sectionRewriter
	startsText bool
}

func (r rewrittenNorm) normalize(s string, align bool) (string, []span) {
	out, spans := s, []span(nil)
	if r.n != nil {
		out, spans = r.n.normalize(s, align)
	}
	if out == "" {
		return out, spans
	}
	return r.rw.rewrite(out, spans, r.startsText, align)
}

// sectionNormalizer is what Encode applies to a section's text: the
// normalizer and, with a Metaspace pre-tokenizer, its rewrite, which
// depends on whether the section starts the text.
func (t *Tokenizer) sectionNormalizer(startsText bool) normalizer {
	if t.rewriter == nil {
		return t.normalizer
	}
	return rewrittenNorm{t.normalizer, t.rewriter, startsText}
}

// rewriterOf is the pre-tokenizer's section rewriter: a Metaspace at the top
// or first in a Sequence (parsePreTokenizer refuses one elsewhere).
func rewriterOf(p preTokenizer) sectionRewriter {
	switch p := p.(type) {
	case metaspacePre:
		return p
	case sequencePre:
		if len(p) > 0 {
			if m, ok := p[0].(metaspacePre); ok {
				return m
			}
		}
	}
	return nil
}

func parseMetaspace(raw json.RawMessage) (metaspacePre, error) {
	var j struct {
		Replacement    string  `json:"replacement"`
		PrependScheme  *string `json:"prepend_scheme"`
		AddPrefixSpace *bool   `json:"add_prefix_space"` // tokenizers < 0.19
		Split          *bool   `json:"split"`
	}
	if err := decodeComponent(raw, &j); err != nil {
		return metaspacePre{}, fmt.Errorf("Metaspace: %w", err)
	}
	m := metaspacePre{replacement: j.Replacement, prepend: prependAlways, splitAt: true}
	if m.replacement == "" {
		return metaspacePre{}, fmt.Errorf("Metaspace: empty replacement (sentencepiece files write \"▁\")")
	}
	if j.Split != nil {
		m.splitAt = *j.Split
	}
	switch {
	case j.PrependScheme != nil:
		switch *j.PrependScheme {
		case "always":
		case "first":
			m.prepend = prependFirst
		case "never":
			m.prepend = prependNever
		default:
			return metaspacePre{}, fmt.Errorf("Metaspace: prepend_scheme %q, want always, first or never", *j.PrependScheme)
		}
	case j.AddPrefixSpace != nil && !*j.AddPrefixSpace:
		m.prepend = prependNever
	}
	return m, nil
}

// metaspaceDecoder undoes Metaspace: each replacement becomes a space,
// except in the first token, where (unless nothing was prepended) HF drops
// them all.
type metaspaceDecoder struct{ pre metaspacePre }

func (d metaspaceDecoder) decodeChain(tokens []string) []string {
	out := make([]string, len(tokens))
	for i, t := range tokens {
		with := " "
		if i == 0 && d.pre.prepend != prependNever {
			with = ""
		}
		out[i] = strings.ReplaceAll(t, d.pre.replacement, with)
	}
	return out
}

// byteFallbackDecoder turns runs of <0xNN> tokens back into the bytes they
// stand for; a run that is not valid UTF-8 becomes one U+FFFD per token, as
// HF's ByteFallback decoder writes it.
type byteFallbackDecoder struct{}

func (byteFallbackDecoder) decodeChain(tokens []string) []string {
	out := make([]string, 0, len(tokens))
	var run []byte
	flush := func(n int) {
		if len(run) == 0 {
			return
		}
		if s := string(run); utf8.ValidString(s) {
			out = append(out, s)
		} else {
			for range n {
				out = append(out, "\uFFFD")
			}
		}
		run = run[:0]
	}
	for _, t := range tokens {
		if b, ok := fallbackByte(t); ok {
			run = append(run, b)
			continue
		}
		flush(len(run))
		out = append(out, t)
	}
	flush(len(run))
	return out
}

// fallbackByte reads a byte-fallback token, "<0xNN>" (either case of hex).
func fallbackByte(t string) (byte, bool) {
	if len(t) != 6 || !strings.HasPrefix(t, "<0x") || t[5] != '>' {
		return 0, false
	}
	hi, okHi := hexDigit(t[3])
	lo, okLo := hexDigit(t[4])
	return hi<<4 | lo, okHi && okLo
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
