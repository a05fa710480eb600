package tokenize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/tokenize"
)

// spTemplate reads a template tagpr recognises (tokenize/chattemplates/).
func spTemplate(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("chattemplates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// withTemplate is a small byte-level tokenizer.json (testdata/trained) with
// a tokenizer_config.json declaring tpl (and the bos and eos tokens, when
// given).
func withTemplate(t *testing.T, tpl string, tokens ...string) *tokenize.Tokenizer {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "trained", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	doc := map[string]any{"chat_template": tpl}
	if len(tokens) == 2 {
		doc["bos_token"], doc["eos_token"] = tokens[0], map[string]any{"content": tokens[1], "special": true}
	}
	cfg, _ := json.Marshal(doc)
	tok, err := tokenize.Parse(raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestSPChatTemplateRecognition: a template is recognised by its text, white
// space inside tags and white space a "-" marker strips aside (copies of a
// model's template differ in those, which do not change what it renders);
// any other change, even of one space in a string literal or a newline
// between tags that the template writes, makes it a template tagpr does not
// know, refused rather than guessed at.
func TestSPChatTemplateRecognition(t *testing.T) {
	llama2, v01, mistral := spTemplate(t, "llama2"), spTemplate(t, "mistral-v0.1"), spTemplate(t, "mistral")
	v02, zephyr := spTemplate(t, "mistral-v0.2"), spTemplate(t, "zephyr")
	for _, c := range []struct {
		name, tpl, want string // want "": unknown
	}{
		{"llama2", llama2, "llama2"},
		{"llama2, one space in a tag", strings.Replace(llama2, "' '  + content", "' ' + content", 1), "llama2"},
		{"llama2, spaced tags", strings.ReplaceAll(strings.ReplaceAll(llama2, "{%", "{%  "), "}}", " }}"), "llama2"},
		{"llama2, a trailing newline (chat_template.jinja)", llama2 + "\n", "llama2"},
		{"llama2, a space more in [/INST]", strings.Replace(llama2, "' [/INST]'", "'  [/INST]'", 1), ""},
		{"llama2, its default system prompt", strings.Replace(llama2, "{% set system_message = false %}", "{% set system_message = 'You are a helpful assistant.' %}", 1), ""},
		{"llama2, | trim for .strip()", strings.ReplaceAll(llama2, "content.strip()", "content | trim"), ""},
		{"mistral-v0.1", v01, "mistral-v0.1"},
		{"mistral", mistral, "mistral"},
		{"mistral-v0.2", v02, "mistral-v0.2"},
		{"mistral-v0.2, other indentation", strings.ReplaceAll(v02, "\n    ", "\n  "), "mistral-v0.2"},
		{"mistral-v0.2, on one line", strings.ReplaceAll(strings.ReplaceAll(v02, "\n", ""), "    ", ""), "mistral-v0.2"},
		{"mistral-v0.2, the system message on its own", strings.Replace(v02, "system_message + '\\n\\n' + message['content']", "system_message + '\\n' + message['content']", 1), ""},
		{"mistral-v0.3", spTemplate(t, "mistral-v0.3"), "mistral-v0.3"},
		{"zephyr", zephyr, "zephyr"},
		{"zephyr, no newline after each turn", strings.ReplaceAll(zephyr, "}}\n{%", "}}{%"), ""},
		{"zephyr, indented", strings.ReplaceAll(zephyr, "\n{{", "\n  {{"), ""},
		{"a Mistral-like template without the role check", "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}", ""},
	} {
		tok := withTemplate(t, c.tpl)
		got := tok.ChatFormat().Name
		if c.want == "" {
			if !tok.ChatTemplateUnknown() {
				t.Errorf("%s: recognised as %s", c.name, got)
				continue
			}
			_, _, err := tok.RenderChat([]tokenize.Message{{Role: "user", Content: "hi"}}, true)
			if err == nil || !strings.Contains(err.Error(), "tokenizer.chat_template") || !strings.Contains(err.Error(), "mistral-v0.3") || !strings.Contains(err.Error(), "zephyr") {
				t.Errorf("%s: an unknown template's error does not name the formats: %v", c.name, err)
			}
			continue
		}
		if got != c.want || tok.ChatTemplateUnknown() {
			t.Errorf("%s: chat format %q (unknown %v), want %q", c.name, got, tok.ChatTemplateUnknown(), c.want)
		}
	}
}

// TestSPChatRefusals: a chat the template raises on, or renders with a
// message left out, is an error naming the rule, not a render the model
// never saw.
func TestSPChatRefusals(t *testing.T) {
	m := func(role, content string) tokenize.Message { return tokenize.Message{Role: role, Content: content} }
	sys, q, a := m("system", "Be brief."), m("user", "Q"), m("assistant", "A")
	for _, c := range []struct {
		format string
		msgs   []tokenize.Message
		want   string // in the error
	}{
		{"mistral-v0.1", []tokenize.Message{sys, q}, `message 0 has role "system" where it wants "user"`},
		{"mistral", []tokenize.Message{sys, q}, "no system message"},
		{"mistral", []tokenize.Message{q, a, a}, `message 2 has role "assistant" where it wants "user"`},
		{"mistral", []tokenize.Message{a, q}, `message 0 has role "assistant" where it wants "user"`},
		{"mistral", []tokenize.Message{q, q}, `message 1 has role "user" where it wants "assistant"`},
		{"mistral-v0.2", []tokenize.Message{q, a, sys, a}, `message 2 has role "system"`},
		{"mistral-v0.2", []tokenize.Message{sys}, "writes the system message into the first user turn, and this chat has none"},
		{"mistral-v0.3", []tokenize.Message{sys, q, a}, "writes the system message into the chat's last turn when it is a user's, and this chat ends with an assistant turn"},
		{"mistral-v0.3", []tokenize.Message{q, a, q, a, q, q}, `message 5 has role "user" where it wants "assistant"`},
		{"llama2", []tokenize.Message{sys, q, a, q, sys}, `message 4 has role "system" where it wants "assistant"`},
		{"llama2", []tokenize.Message{sys}, "the first user turn"},
		{"llama2", []tokenize.Message{a}, "a system message only first"},
		{"llama2", nil, "no message"},
		{"zephyr", nil, "no message"},
		{"mistral-v0.3", []tokenize.Message{q, m("tool", "{}")}, `role "tool", want system, user or assistant`},
	} {
		f, ok := tokenize.ChatFormatByName(c.format)
		if !ok {
			t.Fatalf("no format %s", c.format)
		}
		tok := withTemplate(t, "")
		tok.SetChatFormat(f)
		text, _, err := tok.RenderChat(c.msgs, true)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %v: rendered %q, error %v; want one saying %q", c.format, c.msgs, text, err, c.want)
		}
	}
	// The same chats in the shapes the templates take render.
	for format, msgs := range map[string][]tokenize.Message{
		"mistral": {q, a, q}, "mistral-v0.2": {sys, q, a, q}, "mistral-v0.3": {sys, q, a, q}, "llama2": {sys, q, a}, "zephyr": {a, sys, a},
	} {
		f, _ := tokenize.ChatFormatByName(format)
		tok := withTemplate(t, "")
		tok.SetChatFormat(f)
		if _, _, err := tok.RenderChat(msgs, false); err != nil {
			t.Errorf("%s: %v", format, err)
		}
	}
}

// TestSPChatFormats: the formats by name (every one ChatFormatNames lists),
// their renders of a system, user and assistant turn with the assistant
// spans (content through </s>), and the tokenizer's own bos and eos tokens
// in place of <s> and </s>.
func TestSPChatFormats(t *testing.T) {
	for _, name := range strings.FieldsFunc(strings.ReplaceAll(tokenize.ChatFormatNames, " or ", ", "), func(r rune) bool { return r == ',' || r == ' ' }) {
		if f, ok := tokenize.ChatFormatByName(name); !ok || f.Name != name {
			t.Errorf("ChatFormatNames lists %q, ChatFormatByName gives %q, %v", name, f.Name, ok)
		}
	}
	msgs := []tokenize.Message{{Role: "system", Content: " S "}, {Role: "user", Content: " Q "}, {Role: "assistant", Content: " A "}}
	for _, c := range []struct{ format, text, span string }{
		{"llama2", "<s>[INST] <<SYS>>\n S \n<</SYS>>\n\n Q [/INST] A </s>", "A </s>"},
		{"mistral-v0.2", "<s> [INST]  S \n\n Q  [/INST]  A </s>", " A </s>"},
		{"zephyr", "<|system|>\n S </s>\n<|user|>\n Q </s>\n<|assistant|>\n A </s>\n", " A </s>"},
	} {
		f, _ := tokenize.ChatFormatByName(c.format)
		tok := withTemplate(t, "")
		tok.SetChatFormat(f)
		text, spans, err := tok.RenderChat(msgs, false)
		if err != nil || text != c.text || len(spans) != 1 || text[spans[0][0]:spans[0][1]] != c.span {
			t.Errorf("%s: %q %v %v; want %q with span %q", c.format, text, spans, err, c.text, c.span)
		}
	}
	sys, q, a := tokenize.Message{Role: "system", Content: "Be brief."}, tokenize.Message{Role: "user", Content: "Q"}, tokenize.Message{Role: "assistant", Content: " A "}
	for _, c := range []struct {
		name string
		msgs []tokenize.Message
		text string
	}{
		{"mistral-v0.3", []tokenize.Message{sys, q, a, q}, "<S>[INST] Q[/INST] A<E>[INST] Be brief.\n\nQ[/INST]"},
		{"zephyr", []tokenize.Message{q, a, sys, q}, "<|user|>\nQ<E>\n<|assistant|>\n A <E>\n<|system|>\nBe brief.<E>\n<|user|>\nQ<E>\n<|assistant|>\n"},
	} {
		tok := withTemplate(t, spTemplate(t, c.name), "<S>", "<E>")
		text, _, err := tok.RenderChat(c.msgs, true)
		if f := tok.ChatFormat(); err != nil || text != c.text || f.EndOfTurn != "<E>" {
			t.Errorf("%s with bos <S>, eos <E>: %q (end of turn %q), %v; want %q", c.name, text, f.EndOfTurn, err, c.text)
		}
	}
}
