package serve

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// Model is a causal LM with its tokenizer: what `tagpr serve` serves and
// `tagpr model generate` runs on text.
type Model struct {
	LM   *lm.Model
	Tok  *tokenize.Tokenizer
	Name string
	// EOS ends a completion: the model's EOS ids and the tokenizer's stop
	// tokens (its eos token and the chat format's end of turn).
	EOS []int64
}

// OpenOptions say how to open a model folder.
type OpenOptions struct {
	// Tokenizer, when set, is used instead of the folder's tokenizer.json.
	Tokenizer *tokenize.Tokenizer
	// Name is the model id clients send; default the folder's base name.
	Name    string
	Session ort.Options
	// Half generates in float16 (runtime.generation_dtype; lm.LoadOptions.Half).
	Half bool
}

// Open loads the model in dir (a folder with model.onnx or onnx/model.onnx,
// or the .onnx file) and the tokenizer.json + tokenizer_config.json beside
// it, refusing a model whose vocabulary is smaller than the tokenizer's.
func Open(dir string, o OpenOptions) (*Model, error) {
	tok := o.Tokenizer
	if tok == nil {
		root := dir
		if st, err := os.Stat(dir); err == nil && !st.IsDir() {
			root = filepath.Dir(dir)
		}
		path := filepath.Join(root, "tokenizer.json")
		if _, err := os.Stat(path); err != nil {
			return nil, fmt.Errorf("open model %s: no tokenizer.json in %s; put the model's tokenizer.json (and tokenizer_config.json, which holds the chat template) there or name one with --tokenizer%s", dir, root, tokenize.SentencepieceHint(root))
		}
		var err error
		if tok, err = tokenize.Load(path); err != nil {
			return nil, fmt.Errorf("open model %s: %w", dir, err)
		}
	}
	m, err := lm.Load(dir, lm.LoadOptions{Session: o.Session, TokenizerVocab: tok.VocabSize(), Half: o.Half})
	if err != nil {
		return nil, err
	}
	name := o.Name
	if name == "" {
		name = filepath.Base(strings.TrimRight(dir, string(filepath.Separator)))
	}
	eos := append([]int64(nil), m.DefaultEOS()...)
	seen := map[int64]bool{}
	for _, id := range eos {
		seen[id] = true
	}
	for _, id := range tok.StopTokens() {
		if !seen[int64(id)] {
			seen[int64(id)] = true
			eos = append(eos, int64(id))
		}
	}
	return &Model{LM: m, Tok: tok, Name: name, EOS: eos}, nil
}

// ChatWarning is a warning to show before serving chats, or "": the
// tokenizer declares a chat template of a family tagpr does not render, so
// chat requests are refused (tokenize.Tokenizer.ChatTemplateUnknown).
func (m *Model) ChatWarning() string {
	if !m.Tok.ChatTemplateUnknown() {
		return ""
	}
	return "the tokenizer's chat template (tokenizer_config.json or chat_template.jinja) is none that tagpr renders (ChatML, Qwen3, Llama-3, and Llama 2's, Mistral's and Zephyr's templates as their models ship them): chat requests will be refused; if the model was trained on one of those, name it with tokenizer.chat_template (TAGPR_TOKENIZER_CHAT_TEMPLATE), else send prompts you rendered yourself as text completions"
}

// Close releases the model's session.
func (m *Model) Close() error { return m.LM.Close() }

// EncodeChat renders messages with the tokenizer's chat template, adds the
// assistant's generation prompt and encodes the result.
func (m *Model) EncodeChat(msgs []tokenize.Message) ([]int64, string, error) {
	return m.EncodeChatWith(msgs, tokenize.ChatOptions{AddGenerationPrompt: true})
}

// EncodeChatWith is EncodeChat with the template's options
// (enable_thinking).
func (m *Model) EncodeChatWith(msgs []tokenize.Message, o tokenize.ChatOptions) ([]int64, string, error) {
	enc, err := m.Tok.EncodeChatWith(msgs, o)
	if err != nil {
		return nil, "", err
	}
	return enc.IDs, enc.Text, nil
}

// EncodeText encodes plain text as a completion prompt, with the special
// tokens the tokenizer's post-processor adds (Llama-3's BOS).
func (m *Model) EncodeText(text string) []int64 {
	return m.Tok.EncodeFull(text, true).IDs
}

// Decode is the text of ids without special tokens.
func (m *Model) Decode(ids []int64) string {
	s, err := m.Tok.Decode(ids, true)
	if err != nil {
		return "" // only a negative id fails, and a model samples none (ids past the tokenizer decode to nothing)
	}
	return s
}

// TextCompletion is one completion with its text: the decoded tokens, cut
// before the stop string that ended it, the EOS token left out.
type TextCompletion struct {
	lm.Completion
	Text string
}

// Generate completes prompts with lm.Model.Generate and decodes the
// results as the server does (same EOS ids, same stop-string cut), so a
// greedy `tagpr model generate` and a greedy request to `tagpr serve` give
// the same text. EOS and Detokenize default to the model's.
func (m *Model) Generate(ctx context.Context, prompts [][]int64, o lm.GenerateOptions) ([]TextCompletion, lm.Stats, error) {
	if o.EOS == nil {
		o.EOS = m.EOS
	}
	if len(o.StopStrings) > 0 && o.Detokenize == nil {
		o.Detokenize = m.Decode
	}
	comps, st, err := m.LM.Generate(ctx, prompts, o)
	if err != nil {
		return nil, st, err
	}
	out := make([]TextCompletion, len(comps))
	for i, c := range comps {
		out[i] = TextCompletion{Completion: c, Text: m.completionText(c.Tokens, c.Finish, o.StopStrings)}
	}
	return out, st, nil
}

// completionText is the visible text of a finished completion.
func (m *Model) completionText(ids []int64, finish lm.FinishReason, stops []string) string {
	var t textState
	t.init(m, stops)
	var sb strings.Builder
	for i, id := range ids {
		last := i == len(ids)-1
		var f lm.FinishReason
		if last {
			f = finish
		}
		sb.WriteString(t.add(id, f))
	}
	return sb.String()
}
