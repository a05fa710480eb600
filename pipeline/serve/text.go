package serve

import (
	"bytes"
	"strings"
	"unicode/utf8"

	"github.com/tagpr/tagpr/onnx/lm"
)

// textState turns one completion's tokens into text as they come, so that
// what a stream sends adds up to what a whole response holds:
//   - incremental decoding: a token that ends inside a UTF-8 character
//     waits for the rest (Hugging Face's prefix/read offsets);
//   - stop strings: text that could be the start of one is held back, and
//     the text is cut before the stop string that ended the completion;
//   - the EOS token that ended it adds no text.
type textState struct {
	m            *Model
	stops        []string
	ids          []int64
	prefix, read int    // token offsets of the decoded context and of the text already decoded
	all          []byte // text decoded so far
	emitted      int    // bytes of all already returned
}

func (t *textState) init(m *Model, stops []string) {
	*t = textState{m: m, stops: stops}
}

// add takes the next token (finish set on a completion's last) and returns
// the text that can be shown now.
func (t *textState) add(id int64, finish lm.FinishReason) string {
	if finish != lm.FinishEOS {
		t.ids = append(t.ids, id)
	}
	t.all = append(t.all, t.decodeNew(finish != "")...)
	end := len(t.all)
	switch finish {
	case lm.FinishStop:
		if i := firstStop(t.all, t.stops); i >= 0 {
			end = i
		}
	case "":
		end -= stopPrefixLen(t.all[t.emitted:], t.stops)
	}
	end = max(end, t.emitted)
	out := string(t.all[t.emitted:end])
	t.emitted = end
	return out
}

// decodeNew returns the text the tokens since the last call add; until the
// final call it waits while the text ends in an incomplete character.
func (t *textState) decodeNew(final bool) string {
	if t.read == len(t.ids) {
		return ""
	}
	before, _ := t.m.Tok.Decode(t.ids[t.prefix:t.read], true)
	now, _ := t.m.Tok.Decode(t.ids[t.prefix:], true)
	if !final && (len(now) <= len(before) || strings.HasSuffix(now, string(utf8.RuneError))) {
		return ""
	}
	n := 0 // the common prefix (decoders that clean up spaces can change the end of before)
	for n < len(before) && n < len(now) && before[n] == now[n] {
		n++
	}
	t.prefix, t.read = t.read, len(t.ids)
	return now[n:]
}

// firstStop is where the earliest stop string in text begins, or -1.
func firstStop(text []byte, stops []string) int {
	first := -1
	for _, s := range stops {
		if i := bytes.Index(text, []byte(s)); s != "" && i >= 0 && (first < 0 || i < first) {
			first = i
		}
	}
	return first
}

// stopPrefixLen is the length of the longest end of text that begins some
// stop string (and so may still become one).
func stopPrefixLen(text []byte, stops []string) int {
	best := 0
	for _, s := range stops {
		for k := min(len(s)-1, len(text)); k > best; k-- {
			if bytes.HasSuffix(text, []byte(s[:k])) {
				best = k
				break
			}
		}
	}
	return best
}

const (
	thinkOpen  = "<think>"
	thinkClose = "</think>"
)

// thinkSplit routes a chat completion's text to reasoning_content or
// content, as reasoning servers do: a completion that starts with <think>
// (or whose prompt already opened one) reasons until </think>; the rest is
// content. Newlines right after either tag are dropped. It works on
// streamed pieces, holding back text that may still be a tag.
type thinkSplit struct {
	state    int // splitUndecided, splitReasoning or splitContent
	buf      string
	trimLead bool
}

const (
	splitUndecided = iota
	splitReasoning
	splitContent
)

// newThinkSplit starts a splitter; open says the prompt ends inside a
// <think> block (a template that opens it for the model).
func newThinkSplit(open bool) *thinkSplit {
	if open {
		return &thinkSplit{state: splitReasoning, trimLead: true}
	}
	return &thinkSplit{}
}

// promptOpensThink reports whether rendered prompt text ends inside <think>.
func promptOpensThink(prompt string) bool {
	return strings.LastIndex(prompt, thinkOpen) > strings.LastIndex(prompt, thinkClose)
}

// feed takes the next piece of text (final on the completion's last) and
// returns what goes to reasoning and to content.
func (s *thinkSplit) feed(text string, final bool) (reasoning, content string) {
	s.buf += text
	var r, c strings.Builder
	for {
		switch s.state {
		case splitUndecided:
			t := strings.TrimLeft(s.buf, " \t\r\n")
			switch {
			case strings.HasPrefix(t, thinkOpen):
				s.buf, s.state, s.trimLead = t[len(thinkOpen):], splitReasoning, true
				continue
			case !final && strings.HasPrefix(thinkOpen, t):
				return "", ""
			}
			s.state = splitContent
			continue
		case splitReasoning:
			if s.trimLead {
				if s.buf = strings.TrimLeft(s.buf, "\n"); s.buf == "" && !final {
					return r.String(), c.String()
				}
				s.trimLead = false
			}
			if i := strings.Index(s.buf, thinkClose); i >= 0 {
				r.WriteString(s.buf[:i])
				s.buf, s.state, s.trimLead = s.buf[i+len(thinkClose):], splitContent, true
				continue
			}
			keep := 0
			if !final {
				keep = stopPrefixLen([]byte(s.buf), []string{thinkClose})
			}
			r.WriteString(s.buf[:len(s.buf)-keep])
			s.buf = s.buf[len(s.buf)-keep:]
			return r.String(), c.String()
		default:
			if s.trimLead {
				if s.buf = strings.TrimLeft(s.buf, "\n"); s.buf == "" && !final {
					return r.String(), c.String()
				}
				s.trimLead = false
			}
			c.WriteString(s.buf)
			s.buf = ""
			return r.String(), c.String()
		}
	}
}
