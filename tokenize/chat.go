package tokenize

import (
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
)

// Message is one chat turn.
type Message struct {
	Role    string // system, user, assistant
	Content string
}

// ChatFormat renders a conversation for one template family. tagpr does not
// run Jinja: it recognises the common families in tokenizer_config.json and
// renders them natively.
type ChatFormat struct {
	Name string
	// BOS is written once before the first message ("" for none).
	BOS string
	// Turn renders one message; it returns the text before the content, the
	// content as the template writes it, and the text after it.
	Turn func(role, content string) (before, body, after string)
	// Check, when set, holds a chat to the rules of the template, which
	// raises on a chat it was not written for (the [INST] templates: roles
	// alternating user, assistant, …) or leaves a message out without a
	// word: RenderChatWith returns its error rather than render what the
	// model never saw. It is given the whole chat.
	Check func(msgs []Message) error
	// FoldSystem, when set, writes a leading system message into a user
	// turn, for templates that have no system turn (Llama 2's
	// "<<SYS>>\n…\n<</SYS>>\n\n" before the first user message, Mistral's
	// "{system}\n\n{user}"): given the system message and the messages after
	// it, it returns the index among those of the user turn that takes it
	// and that turn's content with it (Turn renders it as that user's), or
	// an error when the template would write the system message nowhere.
	FoldSystem func(system string, rest []Message) (at int, content string, err error)
	// Generation is appended for add_generation_prompt.
	Generation string
	// EndOfTurn is the token that closes an assistant turn; it is part of
	// the assistant mask so the model learns to stop.
	EndOfTurn string
	// DefaultSystem, when set, is the system message written before a chat
	// that does not begin with one (Qwen2 and Qwen2.5 Instruct templates:
	// "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.").
	DefaultSystem string
	// AssistantBody, when set, rewrites assistant content given whether the
	// turn comes after the last user message and whether it is the last one
	// (Qwen3 moves reasoning into a normalised <think> block there).
	AssistantBody func(content string, afterLastQuery, last bool) string
	// SystemPreamble, when set, makes every chat begin with a system turn:
	// the preamble, then the chat's first system message (trimmed), which
	// is not written again (Llama 3.1 and later: "Cutting Knowledge Date:
	// December 2023\nToday Date: 26 Jul 2024\n\n", with or without one).
	SystemPreamble func() string
	// NoThinking is written after the generation prompt for
	// enable_thinking=False (ChatOptions.DisableThinking) by templates that
	// know the switch: Qwen3's closes an empty think block,
	// "<think>\n\n</think>\n\n", so the model answers without reasoning.
	NoThinking string
	// Opens is the end of Generation that begins the assistant's own
	// text (Qwen3 Thinking-2507: "<think>\n", so the model writes its
	// reasoning straight away): DecodeCompletion puts it back before what
	// the model generated, so a completion reads as the whole turn.
	Opens string
}

// ChatOptions are the apply_chat_template arguments RenderChatWith takes.
type ChatOptions struct {
	// AddGenerationPrompt opens the assistant's turn after the chat.
	AddGenerationPrompt bool
	// DisableThinking is enable_thinking=False: with the generation
	// prompt, a template that knows the switch (Qwen3's) writes its
	// NoThinking text; the others ignore it, as their Jinja does.
	DisableThinking bool
}

// Qwen3Chat is ChatML as Qwen3's template writes it: assistant turns after
// the last user message get their reasoning in a "<think>\n…\n</think>\n\n"
// block (an empty one for the final turn), earlier ones lose it.
var Qwen3Chat = ChatFormat{
	Name:       "qwen3",
	Turn:       ChatML.Turn,
	Generation: ChatML.Generation,
	EndOfTurn:  ChatML.EndOfTurn,
	NoThinking: "<think>\n\n</think>\n\n",
	AssistantBody: func(content string, afterLastQuery, last bool) string {
		reasoning := ""
		if i := strings.LastIndex(content, "</think>"); i >= 0 {
			before := strings.TrimRight(content[:strings.Index(content, "</think>")], "\n")
			if j := strings.LastIndex(before, "<think>"); j >= 0 {
				before = before[j+len("<think>"):]
			}
			reasoning = strings.TrimLeft(before, "\n")
			content = strings.TrimLeft(content[i+len("</think>"):], "\n")
		}
		if afterLastQuery && (last || reasoning != "") {
			return "<think>\n" + strings.Trim(reasoning, "\n") + "\n</think>\n\n" + strings.TrimLeft(content, "\n")
		}
		return content
	},
}

// Qwen3ThinkingChat is Qwen3 as its thinking-only checkpoints'
// templates write it (Qwen3 Thinking-2507): the generation prompt opens the
// think block, "<|im_start|>assistant\n<think>\n", and there is no
// enable_thinking switch.
var Qwen3ThinkingChat = func() ChatFormat {
	f := Qwen3Chat
	f.Name = "qwen3-thinking"
	f.Opens = "<think>\n"
	f.Generation = ChatML.Generation + f.Opens
	f.NoThinking = ""
	return f
}()

// opensThinkRE finds a generation prompt that opens the think block: the
// assistant header and <think> in one string literal, a newline after each
// (Jinja's \n escape or a real one). Qwen3's hybrid templates write <think>
// only after enable_thinking, or after the message's role.
var opensThinkRE = regexp.MustCompile(`<\|im_start\|>assistant(?:\\n|\n)<think>(?:\\n|\n)`)

// ChatML is the default format (Qwen2/3 and most small models):
// <|im_start|>role\ncontent<|im_end|>\n.
var ChatML = ChatFormat{
	Name: "chatml",
	Turn: func(role, content string) (string, string, string) {
		return "<|im_start|>" + role + "\n", content, "<|im_end|>\n"
	},
	Generation: "<|im_start|>assistant\n",
	EndOfTurn:  "<|im_end|>",
}

// Llama3Chat is the Llama-3 format; content is trimmed as its template does
// (Jinja's trim is Python's str.strip: Unicode white space and the ASCII
// separators \x1c-\x1f).
var Llama3Chat = ChatFormat{
	Name: "llama3",
	BOS:  "<|begin_of_text|>",
	Turn: func(role, content string) (string, string, string) {
		return "<|start_header_id|>" + role + "<|end_header_id|>\n\n", strings.TrimFunc(content, pythonSpace), "<|eot_id|>"
	},
	Generation: "<|start_header_id|>assistant<|end_header_id|>\n\n",
	EndOfTurn:  "<|eot_id|>",
}

// Llama31Chat is the Llama 3.1 and 3.3 Instruct format: Llama-3 turns after
// a system turn that is always written, holding the template's knowledge
// cutoff and its fixed date_string before the chat's system message.
var Llama31Chat = llama31Chat("llama3.1", func() string { return llamaFallbackDate })

// llama32Chat is Llama 3.2's format: Llama 3.1's with the date that
// transformers' strftime_now("%d %b %Y") gives (today, local time).
var llama32Chat = llama31Chat("llama3.2", func() string { return chatNow().Format("02 Jan 2006") })

// chatNow is the clock of templates that write today's date (a variable
// for tests).
var chatNow = time.Now

// llamaFallbackDate is the date_string Llama 3.1's template always writes and
// Llama 3.2's writes when the renderer has no strftime_now.
const llamaFallbackDate = "26 Jul 2024"

// Undated returns f with a date the template takes from the clock (Llama
// 3.2's) replaced by the template's own fallback, 26 Jul 2024. A training
// run renders prompts on many days (its SFT data, every RL step's rollouts,
// a resume next week, predictions): with today's date in them they would
// change with the calendar, and with them the run's results.
func (f ChatFormat) Undated() ChatFormat {
	if f.Name == llama32Chat.Name {
		f.SystemPreamble = llama31Chat(f.Name, func() string { return llamaFallbackDate }).SystemPreamble
	}
	return f
}

func llama31Chat(name string, date func() string) ChatFormat {
	f := Llama3Chat
	f.Name = name
	f.SystemPreamble = func() string {
		return "Cutting Knowledge Date: December 2023\nToday Date: " + date() + "\n\n"
	}
	return f
}

// pythonSpace is Python's str.isspace: Unicode White_Space plus the
// information separators U+001C-U+001F.
func pythonSpace(r rune) bool { return unicode.IsSpace(r) || r >= 0x1c && r <= 0x1f }

// ChatFormatNames lists the formats ChatFormatByName knows, as error
// messages give them.
const ChatFormatNames = "chatml, qwen3, qwen3-thinking, llama3, llama3.1, llama3.2, llama2, mistral-v0.1, mistral, mistral-v0.2, mistral-v0.3 or zephyr"

// ChatFormatByName returns a known format: chatml, qwen3, qwen3-thinking,
// llama3, llama3.1, llama3.2, llama2, mistral-v0.1, mistral, mistral-v0.2,
// mistral-v0.3 or zephyr (the last six with <s> and </s> as bos and eos, as
// Llama 2's and Mistral's tokenizers have them).
func ChatFormatByName(name string) (ChatFormat, bool) {
	for _, f := range []ChatFormat{ChatML, Qwen3Chat, Qwen3ThinkingChat, Llama3Chat, Llama31Chat, llama32Chat,
		Llama2Chat, MistralV01Chat, MistralChat, MistralV02Chat, MistralV03Chat, ZephyrChat} {
		if f.Name == name {
			return f, true
		}
	}
	return ChatFormat{}, false
}

// SetChatFormat makes the tokenizer render chats in f, whatever its
// tokenizer_config.json declares.
func (t *Tokenizer) SetChatFormat(f ChatFormat) { t.chat = &f }

// ChatFormat returns the format set with SetChatFormat, else the one
// declared by tokenizer_config.json when it is a known family, else ChatML
// (with the template's default system prompt, if it writes one). The
// templates of sentencepiece-tokenizer models (Llama 2, Mistral, Zephyr)
// are recognised by their whole text (chat_sp.go) and rendered with the
// tokenizer's bos and eos tokens.
func (t *Tokenizer) ChatFormat() ChatFormat {
	if t.chat != nil {
		return *t.chat
	}
	tpl := t.config.ChatTemplate
	if f, ok := spChatFormat(tpl, t.config.BOS, t.config.EOS); ok {
		return f
	}
	switch {
	case strings.Contains(tpl, "<|start_header_id|>") && strings.Contains(tpl, "<|eot_id|>"):
		switch {
		case !strings.Contains(tpl, "Cutting Knowledge Date"):
			return Llama3Chat
		case strings.Contains(tpl, "strftime_now"):
			return llama32Chat
		default:
			return Llama31Chat
		}
	case strings.Contains(tpl, "<|im_start|>") && strings.Contains(tpl, "reasoning_content") && opensThinkRE.MatchString(tpl):
		return Qwen3ThinkingChat
	case strings.Contains(tpl, "<|im_start|>") && strings.Contains(tpl, "reasoning_content"):
		f := Qwen3Chat
		if !strings.Contains(tpl, "enable_thinking") {
			f.NoThinking = "" // a template without the switch (Qwen3-2507's) ignores it
		}
		return f
	default:
		f := ChatML
		f.DefaultSystem = chatMLDefaultSystem(tpl)
		return f
	}
}

// defaultSystemRE finds the system turn a ChatML template writes as a
// constant, which it does only when the chat has no system message (Qwen2.5:
// {{- '<|im_start|>system\nYou are Qwen, …<|im_end|>\n' }}); a system turn
// built from the messages has a quote or an expression in between. The
// newline is Jinja's escape (\n) in a string literal, or a real one.
var defaultSystemRE = regexp.MustCompile(`<\|im_start\|>system(?:\\n|\n)([^'"{}+\\]+)<\|im_end\|>`)

// chatMLDefaultSystem is the default system prompt of a ChatML template, or
// "".
func chatMLDefaultSystem(tpl string) string {
	if m := defaultSystemRE.FindStringSubmatch(tpl); m != nil {
		return m[1]
	}
	return ""
}

// ChatTemplateUnknown reports whether the tokenizer declares a chat
// template (tokenizer_config.json or chat_template.jinja) of no family
// tagpr renders (ChatML, Qwen3, Llama-3, Llama 3.1/3.2, and the templates
// of Llama 2 chat, Mistral 7B Instruct v0.1-v0.3, Mixtral 8x7B Instruct and
// Zephyr/TinyLlama, recognised by their text): Gemma's <start_of_turn>,
// Phi's, an [INST] template of another text… RenderChat refuses such a
// tokenizer rather than render ChatML the model may never have seen. False
// once SetChatFormat chose a format.
func (t *Tokenizer) ChatTemplateUnknown() bool {
	tpl := t.config.ChatTemplate
	return t.chat == nil && strings.TrimSpace(tpl) != "" && t.ChatFormat().Name == ChatML.Name && !strings.Contains(tpl, "<|im_start|>")
}

// RenderChat renders messages with the tokenizer's chat format; the spans
// are the byte ranges of assistant content (through its end-of-turn token).
func (t *Tokenizer) RenderChat(msgs []Message, addGenerationPrompt bool) (string, [][2]int, error) {
	return t.RenderChatWith(msgs, ChatOptions{AddGenerationPrompt: addGenerationPrompt})
}

// RenderChatWith is RenderChat with apply_chat_template's options.
func (t *Tokenizer) RenderChatWith(msgs []Message, o ChatOptions) (string, [][2]int, error) {
	f := t.ChatFormat()
	if t.ChatTemplateUnknown() {
		// Rendered as ChatML, a Gemma or Phi template, or an [INST] one of
		// another text, would give the model prompts it was never trained
		// on, unsaid.
		return "", nil, fmt.Errorf("chat: the tokenizer's chat template (tokenizer_config.json or chat_template.jinja) is none of the families tagpr renders (ChatML, Qwen3, Llama-3, Llama 3.1/3.2, and Llama 2's, Mistral 7B Instruct v0.1-v0.3's, Mixtral 8x7B's and Zephyr's templates as their models ship them; it does not run Jinja): if the model was trained on one of them, set it with tokenizer.chat_template (%s; TAGPR_TOKENIZER_CHAT_TEMPLATE), else give it a ChatML template", ChatFormatNames)
	}
	for i, m := range msgs {
		switch m.Role {
		case "system", "user", "assistant":
		default:
			return "", nil, fmt.Errorf("chat: message %d has role %q, want system, user or assistant", i, m.Role)
		}
	}
	if f.Check != nil {
		if err := f.Check(msgs); err != nil {
			return "", nil, err
		}
	}
	var sb strings.Builder
	var spans [][2]int
	sb.WriteString(f.BOS)
	folded, foldedContent := -1, ""
	if f.FoldSystem != nil && len(msgs) > 0 && msgs[0].Role == "system" {
		at, content, err := f.FoldSystem(msgs[0].Content, msgs[1:])
		if err != nil {
			return "", nil, err
		}
		msgs, folded, foldedContent = msgs[1:], at, content
	}
	if f.SystemPreamble != nil {
		system := ""
		if len(msgs) > 0 && msgs[0].Role == "system" {
			system = strings.TrimFunc(msgs[0].Content, pythonSpace)
			msgs = msgs[1:]
		}
		before, _, after := f.Turn("system", "")
		sb.WriteString(before + f.SystemPreamble() + system + after)
	}
	if f.DefaultSystem != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		before, body, after := f.Turn("system", f.DefaultSystem)
		sb.WriteString(before + body + after)
	}
	lastQuery := len(msgs) - 1
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].Role == "user" {
			lastQuery = i
			break
		}
	}
	for i, m := range msgs {
		content := m.Content
		if i == folded {
			content = foldedContent
		}
		if m.Role == "assistant" && f.AssistantBody != nil {
			content = f.AssistantBody(content, i > lastQuery, i == len(msgs)-1)
		}
		before, body, after := f.Turn(m.Role, content)
		sb.WriteString(before)
		start := sb.Len()
		sb.WriteString(body)
		if m.Role == "assistant" {
			// The span runs through the end-of-turn token, with what the
			// template writes before it (Llama 2's " </s>").
			end := sb.Len()
			if k := strings.Index(after, f.EndOfTurn); f.EndOfTurn != "" && k >= 0 {
				end += k + len(f.EndOfTurn)
			}
			spans = append(spans, [2]int{start, end})
		}
		sb.WriteString(after)
	}
	if o.AddGenerationPrompt {
		sb.WriteString(f.Generation)
		if o.DisableThinking {
			sb.WriteString(f.NoThinking)
		}
	}
	return sb.String(), spans, nil
}

// ChatEncoding is an encoded conversation.
type ChatEncoding struct {
	Text string
	IDs  []int64
	// AssistantMask is true on tokens of assistant turns (content and the
	// end-of-turn token): the tokens SFT trains on.
	AssistantMask []bool
}

// EncodeChat renders and encodes a conversation. The whole text is encoded
// at once (so ids equal Encode(text)) and the mask comes from offsets.
func (t *Tokenizer) EncodeChat(msgs []Message, addGenerationPrompt bool) (ChatEncoding, error) {
	return t.EncodeChatWith(msgs, ChatOptions{AddGenerationPrompt: addGenerationPrompt})
}

// EncodeChatWith is EncodeChat with apply_chat_template's options.
func (t *Tokenizer) EncodeChatWith(msgs []Message, o ChatOptions) (ChatEncoding, error) {
	text, spans, err := t.RenderChatWith(msgs, o)
	if err != nil {
		return ChatEncoding{}, err
	}
	e := t.EncodeFull(text, false)
	mask := make([]bool, len(e.IDs))
	k := 0
	for i, off := range e.Offsets {
		for k < len(spans) && spans[k][1] <= off[0] {
			k++
		}
		// A token is the assistant's when it holds any of its text, as
		// transformers' assistant mask (char_to_token) has it: a
		// sentencepiece token such as "▁The" begins at the space the
		// template writes before the content.
		if k < len(spans) && off[0] < spans[k][1] && (off[1] > spans[k][0] || off[0] >= spans[k][0]) {
			mask[i] = true
		}
	}
	return ChatEncoding{Text: text, IDs: e.IDs, AssistantMask: mask}, nil
}
