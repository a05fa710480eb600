package tokenize

import (
	"embed"
	"fmt"
	"strings"
	"sync"
	"unicode"
)

// The chat formats of sentencepiece-tokenizer models (Llama 2, Mistral 7B,
// Zephyr, TinyLlama). Their templates differ from one release to the next
// in a space here and there, so tagpr recognises each by its whole text,
// kept as the model's tokenizer_config.json has it in chattemplates/
// (scripts/tokenize/hf_chat.py records transformers' renders of them in
// testdata/chat_hf.json, and tells where each comes from):
//
//	llama2        meta-llama/Llama-2-{7,13,70}b-chat-hf
//	mistral-v0.1  mistralai/Mistral-7B-Instruct-v0.1 as first released (a space after </s>)
//	mistral       mistralai/Mixtral-8x7B-Instruct-v0.1, and Mistral-7B-Instruct-v0.2 as first released
//	mistral-v0.2  Mistral-7B-Instruct-v0.2's later template, which takes a system message
//	mistral-v0.3  mistralai/Mistral-7B-Instruct-v0.3 (tokenizer v3; its tool calling is not rendered)
//	zephyr        HuggingFaceH4/zephyr-7b-beta, TinyLlama/TinyLlama-1.1B-Chat-v1.0
//
// A template of another text, even one that looks like these, is not
// guessed at: ChatTemplateUnknown reports it and RenderChat refuses it.
//
// None of the [INST] templates writes a generation prompt (the model
// answers right after "[/INST]"), and each closes an assistant turn with the
// tokenizer's eos token, </s>. They raise on a chat their model was not
// trained on (roles out of turn, a system message where they take none), and
// some leave a system message out without a word (Llama 2's after the first
// turn, Mistral v0.3's when the chat does not end with a user turn): tagpr
// returns an error for both rather than render what the model never saw or
// drop a message unsaid. transformers' apply_chat_template refuses an empty
// chat, and so does tagpr for these formats.
//
// The assistant span (what AssistantMask marks, the tokens SFT trains on)
// is the assistant content as the template writes it (stripped, for Llama
// 2 and Mistral v0.3) through the end-of-turn token, with what the template
// writes between them (Llama 2's space before </s>, which the model must
// produce too). What comes before the content (the space after "[/INST]",
// Zephyr's "<|assistant|>\n") and after </s> (Llama 2's "<s>" opening the
// next [INST], Mistral v0.1's space, Zephyr's newline) is template text, as
// it would be outside `{% generation %}` in transformers: its
// return_assistant_tokens_mask marks every token that overlaps the span, and
// so does EncodeChat, so a sentencepiece token that joins the space after
// "[/INST]" to the answer's first word ("▁Hi") is trained on, as the model
// generates it.

//go:embed chattemplates/*.jinja
var spTemplateFiles embed.FS

// spTemplates maps a template's shape (templateShape) to its format name.
var spTemplates = func() map[string]string {
	m := map[string]string{}
	for _, name := range []string{"llama2", "mistral-v0.1", "mistral", "mistral-v0.2", "mistral-v0.3", "zephyr"} {
		b, err := spTemplateFiles.ReadFile("chattemplates/" + name + ".jinja")
		if err != nil {
			panic(err)
		}
		m[templateShape(string(b))] = name
	}
	return m
}()

// spTemplateNames caches spTemplates' answer by template text: ChatFormat
// runs for every chat and completion.
var spTemplateNames sync.Map

// spChatFormat is the format of a known sentencepiece-model template, with
// the tokenizer's bos and eos tokens ("" for <s> and </s>).
func spChatFormat(tpl, bos, eos string) (ChatFormat, bool) {
	if !strings.Contains(tpl, "[INST]") && !strings.Contains(tpl, "<|user|>") {
		return ChatFormat{}, false
	}
	v, ok := spTemplateNames.Load(tpl)
	if !ok {
		v, _ = spTemplateNames.LoadOrStore(tpl, spTemplates[templateShape(tpl)])
	}
	if v.(string) == "" {
		return ChatFormat{}, false
	}
	return spFormat(v.(string), bos, eos), true
}

// spFormat builds the named format with the given bos and eos tokens (""
// for <s> and </s>, Llama's and Mistral's).
func spFormat(name, bos, eos string) ChatFormat {
	if bos == "" {
		bos = "<s>"
	}
	if eos == "" {
		eos = "</s>"
	}
	switch name {
	case "llama2":
		return llama2Chat(bos, eos)
	case "mistral-v0.1":
		return mistralChat(name, bos, eos, " ")
	case "mistral":
		return mistralChat(name, bos, eos, "")
	case "mistral-v0.2":
		return mistralV02Chat(bos, eos)
	case "mistral-v0.3":
		return mistralV03Chat(bos, eos)
	case "zephyr":
		return zephyrChat(eos)
	}
	panic("tokenize: no chat format " + name)
}

// Llama2Chat is Llama 2 chat's format: "<s>[INST] <<SYS>>\n{system}\n<</SYS>>\n\n{user} [/INST] {assistant} </s><s>[INST] {user} [/INST]",
// each turn's content stripped (the system block and the first user
// message as one), every [INST] opened with <s>.
var Llama2Chat = spFormat("llama2", "", "")

// ZephyrChat is Zephyr's and TinyLlama chat's format:
// "<|system|>\n{system}</s>\n<|user|>\n{user}</s>\n<|assistant|>\n".
var ZephyrChat = spFormat("zephyr", "", "")

// MistralV01Chat is Mistral 7B Instruct v0.1's first format:
// "<s>[INST] {user} [/INST]{assistant}</s> [INST] {user} [/INST]", no
// system message.
var MistralV01Chat = spFormat("mistral-v0.1", "", "")

// MistralChat is MistralV01Chat without the space after </s> (Mixtral 8x7B
// Instruct v0.1, Mistral 7B Instruct v0.2 as first released).
var MistralChat = spFormat("mistral", "", "")

// MistralV02Chat is Mistral 7B Instruct v0.2's later format, which takes a
// system message into the first user turn:
// "<s> [INST] {system}\n\n{user} [/INST] {assistant}</s> [INST] {user} [/INST]".
var MistralV02Chat = spFormat("mistral-v0.2", "", "")

// MistralV03Chat is Mistral 7B Instruct v0.3's format (tokenizer v3), which
// writes a system message into the chat's last turn, a user's:
// "<s>[INST] {user}[/INST] {assistant}</s>[INST] {system}\n\n{user}[/INST]",
// assistant content stripped.
var MistralV03Chat = spFormat("mistral-v0.3", "", "")

func llama2Chat(bos, eos string) ChatFormat {
	const name = "llama2"
	return ChatFormat{
		Name: name,
		Turn: func(role, content string) (string, string, string) {
			if role == "assistant" {
				return " ", strings.TrimFunc(content, pythonSpace), " " + eos
			}
			return bos + "[INST] ", strings.TrimFunc(content, pythonSpace), " [/INST]"
		},
		EndOfTurn: eos,
		Check:     func(msgs []Message) error { return alternating(name, msgs, true) },
		FoldSystem: func(system string, rest []Message) (int, string, error) {
			if len(rest) == 0 {
				return 0, "", errSystemDropped(name, "the first user turn", "has none")
			}
			return 0, "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + rest[0].Content, nil
		},
	}
}

// mistralChat is the first [INST] template: no system message, afterEOS
// written after each assistant turn's </s> (v0.1's space).
func mistralChat(name, bos, eos, afterEOS string) ChatFormat {
	return ChatFormat{
		Name: name,
		BOS:  bos,
		Turn: func(role, content string) (string, string, string) {
			if role == "assistant" {
				return "", content, eos + afterEOS
			}
			return "[INST] ", content, " [/INST]"
		},
		EndOfTurn: eos,
		Check:     func(msgs []Message) error { return alternating(name, msgs, false) },
	}
}

func mistralV02Chat(bos, eos string) ChatFormat {
	const name = "mistral-v0.2"
	return ChatFormat{
		Name: name,
		BOS:  bos,
		Turn: func(role, content string) (string, string, string) {
			if role == "assistant" {
				return " ", content, eos
			}
			return " [INST] ", content, " [/INST]"
		},
		EndOfTurn: eos,
		Check:     func(msgs []Message) error { return alternating(name, msgs, true) },
		FoldSystem: func(system string, rest []Message) (int, string, error) {
			if len(rest) == 0 {
				return 0, "", errSystemDropped(name, "the first user turn", "has none")
			}
			return 0, system + "\n\n" + rest[0].Content, nil
		},
	}
}

func mistralV03Chat(bos, eos string) ChatFormat {
	const name = "mistral-v0.3"
	return ChatFormat{
		Name: name,
		BOS:  bos,
		Turn: func(role, content string) (string, string, string) {
			if role == "assistant" {
				return " ", strings.TrimFunc(content, pythonSpace), eos
			}
			return "[INST] ", content, "[/INST]"
		},
		EndOfTurn: eos,
		Check:     func(msgs []Message) error { return alternating(name, msgs, true) },
		FoldSystem: func(system string, rest []Message) (int, string, error) {
			last := len(rest) - 1
			if last < 0 || rest[last].Role != "user" {
				return 0, "", errSystemDropped(name, "the chat's last turn when it is a user's", "ends with an assistant turn")
			}
			return last, system + "\n\n" + rest[last].Content, nil
		},
	}
}

func zephyrChat(eos string) ChatFormat {
	return ChatFormat{
		Name: "zephyr",
		Turn: func(role, content string) (string, string, string) {
			return "<|" + role + "|>\n", content, eos + "\n"
		},
		Generation: "<|assistant|>\n",
		EndOfTurn:  eos,
		Check: func(msgs []Message) error {
			if len(msgs) == 0 {
				return errEmptyChat
			}
			return nil
		},
	}
}

var errEmptyChat = fmt.Errorf("chat: the chat has no message (transformers' apply_chat_template refuses it too)")

// alternating is the rule the [INST] templates raise on (Llama 2's also
// leaves a system message out when it is not first): after a leading
// system message, where the template takes one, the roles alternate user,
// assistant, user, …
func alternating(name string, msgs []Message, system bool) error {
	if len(msgs) == 0 {
		return errEmptyChat
	}
	first := 0
	if system && msgs[0].Role == "system" {
		first = 1
	}
	for i := first; i < len(msgs); i++ {
		want := "user"
		if (i-first)%2 == 1 {
			want = "assistant"
		}
		if msgs[i].Role != want {
			rule := "roles alternating user, assistant, user, … and no system message"
			if system {
				rule = "a system message only first, then roles alternating user, assistant, user, …"
			}
			return fmt.Errorf("chat: the %s chat template takes %s: message %d has role %q where it wants %q (its Jinja raises on this chat, or leaves the message out); reorder or merge the messages", name, rule, i, msgs[i].Role, want)
		}
	}
	return nil
}

// errSystemDropped is the refusal of a chat whose system message the
// template writes nowhere.
func errSystemDropped(name, where, chat string) error {
	return fmt.Errorf("chat: the %s chat template writes the system message into %s, and this chat %s: it would render without the system message, so tagpr refuses it; put the system text into a user message, or leave it out", name, where, chat)
}

// templateShape is a Jinja template without what cannot change what it
// renders: white space inside tags ({{ }}, {% %}, {# #}) outside string
// literals, and the white space a "-" marker strips from the text beside
// its tag. Templates of one shape render alike; copies of a model's
// template that differ in such spaces (' '  + content, indentation between
// {%- tags) are recognised as it.
func templateShape(tpl string) string {
	tpl = strings.TrimSpace(tpl)
	var b strings.Builder
	trimNext := false // the last tag ended with "-": strip the text's leading space
	for i := 0; i < len(tpl); {
		j := i
		for j < len(tpl) && !(tpl[j] == '{' && j+1 < len(tpl) && strings.IndexByte("{%#", tpl[j+1]) >= 0) {
			j++
		}
		text := tpl[i:j]
		if trimNext {
			text = strings.TrimLeftFunc(text, unicode.IsSpace)
		}
		if j+2 < len(tpl) && tpl[j+2] == '-' {
			text = strings.TrimRightFunc(text, unicode.IsSpace)
		}
		b.WriteString(text)
		if j == len(tpl) {
			break
		}
		closer := "}}"
		switch tpl[j+1] {
		case '%':
			closer = "%}"
		case '#':
			closer = "#}"
		}
		b.WriteString(tpl[j : j+2])
		k := j + 2
		var last byte
		for k < len(tpl) && !strings.HasPrefix(tpl[k:], closer) {
			switch c := tpl[k]; {
			case (c == '\'' || c == '"') && closer != "#}":
				end := k + 1
				for end < len(tpl) && tpl[end] != c {
					if tpl[end] == '\\' {
						end++
					}
					end++
				}
				end = min(end+1, len(tpl))
				b.WriteString(tpl[k:end])
				last, k = c, end
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				k++
			default:
				b.WriteByte(c)
				last = c
				k++
			}
		}
		trimNext = last == '-'
		if k < len(tpl) {
			b.WriteString(closer)
			k += 2
		}
		i = k
	}
	return b.String()
}
