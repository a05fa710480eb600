package serve

import (
	"strings"
	"testing"

	"github.com/tagpr/tagpr/onnx/lm"
)

// Streaming a completion token by token shows the same text as decoding it
// whole: characters split across tokens wait for their last byte, text that
// may begin a stop string waits until it cannot, and the EOS token adds
// nothing.
func TestTextStateStreamsWhatWholeShows(t *testing.T) {
	m := openModel(t, randomDir)
	text := "Grüße, 世界! Stop here <think>no</think> ok"
	ids := m.EncodeText(text)
	eos := m.EOS[0]
	for _, c := range []struct {
		stops  []string
		finish lm.FinishReason
		want   string
	}{
		{nil, lm.FinishLength, text},
		{[]string{"Stop here"}, lm.FinishStop, "Grüße, 世界! "},
		{[]string{"界!", "zz"}, lm.FinishStop, "Grüße, 世"},
		{[]string{"nowhere"}, lm.FinishEOS, text},
	} {
		toks := append([]int64(nil), ids...)
		if c.finish == lm.FinishEOS {
			toks = append(toks, eos)
		}
		// Where the engine would stop: the first token whose text holds a stop.
		if c.finish == lm.FinishStop {
			for n := 1; n <= len(toks); n++ {
				if firstStop([]byte(m.Decode(toks[:n])), c.stops) >= 0 {
					toks = toks[:n]
					break
				}
			}
		}
		var got strings.Builder
		for _, piece := range streamPieces(m, toks, c.stops, c.finish) {
			if strings.ContainsRune(piece, '\uFFFD') {
				t.Errorf("stops %q: piece %q holds a broken character", c.stops, piece)
			}
			for _, s := range c.stops {
				if strings.Contains(got.String()+piece, s) {
					t.Errorf("stops %q: the stream showed the stop string: %q", c.stops, got.String()+piece)
				}
			}
			got.WriteString(piece)
		}
		if got.String() != c.want {
			t.Errorf("stops %q, finish %s: %q, want %q", c.stops, c.finish, got.String(), c.want)
		}
		if whole := m.completionText(toks, c.finish, c.stops); whole != c.want {
			t.Errorf("stops %q: completionText %q, want %q", c.stops, whole, c.want)
		}
	}
}

// streamPieces is the text a stream shows for each of toks, the last
// finishing with finish.
func streamPieces(m *Model, toks []int64, stops []string, finish lm.FinishReason) []string {
	var st textState
	st.init(m, stops)
	out := make([]string, len(toks))
	for i, id := range toks {
		f := lm.FinishReason("")
		if i == len(toks)-1 {
			f = finish
		}
		out[i] = st.add(id, f)
	}
	return out
}

// The reasoning split gives the same result fed a byte at a time as whole.
func TestThinkSplit(t *testing.T) {
	for _, c := range []struct {
		text              string
		open              bool
		reasoning, answer string
	}{
		{"<think>\nweigh it\n</think>\n\nYes.", false, "weigh it\n", "Yes."},
		{"  <think>a<b</think>c", false, "a<b", "c"},
		{"plain answer", false, "", "plain answer"},
		{"<thi", false, "", "<thi"},
		{"still thinking", true, "still thinking", ""},
		{"\nreason</think>\nanswer", true, "reason", "answer"},
		{"<think>unfinished", false, "unfinished", ""},
	} {
		for _, step := range []int{1, 3, len(c.text)} {
			s := newThinkSplit(c.open)
			var r, a strings.Builder
			for i := 0; i < len(c.text); i += step {
				end := min(i+step, len(c.text))
				x, y := s.feed(c.text[i:end], end == len(c.text))
				r.WriteString(x)
				a.WriteString(y)
			}
			if r.String() != c.reasoning || a.String() != c.answer {
				t.Errorf("%q (open %v) in pieces of %d: reasoning %q, answer %q; want %q, %q", c.text, c.open, step, r.String(), a.String(), c.reasoning, c.answer)
			}
		}
	}
	if !promptOpensThink("<|im_start|>assistant\n<think>\n") || promptOpensThink("<think>\n\n</think>\n\n") {
		t.Error("promptOpensThink")
	}
}
