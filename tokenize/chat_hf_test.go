package tokenize_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/tagpr/tagpr/tokenize"
)

// TestChatMatchesTransformers holds RenderChat and EncodeChat to
// transformers' apply_chat_template(tokenize=False) with the pinned Qwen3 and
// Llama-3 templates, and with Qwen2.5-Instruct's and Qwen2-Instruct's (on
// Qwen3's tokenizer.json), recorded by scripts/tokenize/hf_chat.py into
// testdata/chat_hf.json: multi-turn chats with system prompts, empty content,
// <think> blocks, and content ending in whitespace or in ASCII separators
// (\x1c-\x1f), which Jinja's trim (Python's str.strip) removes. The Qwen2
// templates write a default system prompt when the chat has none. Llama
// 3.1's and 3.2's (on Llama-3's tokenizer.json) always write a system turn
// with the knowledge cutoff and the date, 3.2's today's. Each chat is
// rendered with the generation prompt ("gen"), without ("nogen") and with
// enable_thinking=False ("gen_nothink"), which only Qwen3's template reads.
//
// The templates of sentencepiece-tokenizer models (Llama 2 chat, Mistral 7B
// Instruct v0.1, v0.2 and v0.3, Mixtral 8x7B Instruct, Zephyr, TinyLlama;
// tokenize/chattemplates/, with <s> and </s> as bos and eos) must be
// recognised as their format ("formats") and render transformers' text and
// ids, with AssistantMask equal to transformers' return_assistant_tokens_mask
// from the template with {% generation %} around each assistant content and
// its </s>; where the template raises on a chat ("error": roles out of
// turn, a system message it does not take) or leaves a message out
// ("drops"), RenderChat must refuse it.
func TestChatMatchesTransformers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "chat_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	type rendered struct {
		Text  string  `json:"text"`
		IDs   []int64 `json:"ids"`
		Mask  []bool  `json:"mask"`
		Error string  `json:"error"`
		Drops []int   `json:"drops"`
	}
	var fx struct {
		Reference          string               `json:"reference"`
		Chats              [][]tokenize.Message `json:"chats"`
		Templates          map[string]string    `json:"templates"`
		TemplateTokenizers map[string]string    `json:"template_tokenizers"`
		Formats            map[string]string    `json:"formats"`
		Llama32Date        string               `json:"llama32_date"`
		Tokenizers         map[string][]map[string]rendered
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	// Llama 3.2's template writes today's date; the fixture was rendered
	// with this one.
	day, err := time.Parse("02 Jan 2006", fx.Llama32Date)
	if err != nil {
		t.Fatal(err)
	}
	defer tokenize.SetChatNow(func() time.Time { return day })()
	masks, refusals := 0, 0
	for name, rows := range fx.Tokenizers {
		var tok *tokenize.Tokenizer
		if tpl, ok := fx.Templates[name]; ok {
			base := "qwen3"
			if b, ok := fx.TemplateTokenizers[name]; ok {
				base = b
			}
			tj, err := os.ReadFile(pinnedPath(t, base+"-tokenizer"))
			if err != nil {
				t.Fatal(err)
			}
			doc := map[string]string{"chat_template": tpl}
			if _, ok := fx.Formats[name]; ok {
				doc["bos_token"], doc["eos_token"] = "<s>", "</s>" // what the script renders them with
			}
			cfg, _ := json.Marshal(doc)
			if tok, err = tokenize.Parse(tj, cfg); err != nil {
				t.Fatal(err)
			}
		} else {
			tok = pinnedTokenizer(t, name)
		}
		if want, ok := fx.Formats[name]; ok {
			if got := tok.ChatFormat().Name; got != want || tok.ChatTemplateUnknown() {
				t.Errorf("%s template: chat format %q (unknown %v), want %q", name, got, tok.ChatTemplateUnknown(), want)
				continue
			}
		}
		for i, msgs := range fx.Chats {
			for key, want := range rows[i] {
				e, err := tok.EncodeChatWith(msgs, tokenize.ChatOptions{AddGenerationPrompt: key != "nogen", DisableThinking: key == "gen_nothink"})
				if want.Error != "" || len(want.Drops) > 0 {
					refusals++
					if err == nil {
						t.Errorf("%s chat %d (%s): rendered %q; %s: %s", name, i, key, e.Text, fx.Reference, refusal(want.Error, want.Drops))
					}
					continue
				}
				if err != nil {
					t.Errorf("%s chat %d (%s): %v", name, i, key, err)
					continue
				}
				if e.Text != want.Text {
					t.Errorf("%s chat %d (%s):\n got %q\n%s %q", name, i, key, e.Text, fx.Reference, want.Text)
				} else if !sameIDs(e.IDs, want.IDs) {
					t.Errorf("%s chat %d (%s): ids %v, %s %v", name, i, key, e.IDs, fx.Reference, want.IDs)
				} else if want.Mask != nil {
					masks++
					if !reflect.DeepEqual(e.AssistantMask, want.Mask) {
						t.Errorf("%s chat %d (%s): assistant mask\n got %v\n%s %v\n(text %q)", name, i, key, e.AssistantMask, fx.Reference, want.Mask, e.Text)
					}
				}
			}
		}
	}
	// The fixture must hold masks and refusals to check (a re-recording
	// without them would pass vacuously).
	if masks < 100 || refusals < 50 {
		t.Errorf("%d assistant masks and %d refusals checked; the fixture should have more", masks, refusals)
	}
}

// refusal says why transformers' template does not render a chat.
func refusal(err string, drops []int) string {
	if err != "" {
		return err
	}
	return fmt.Sprintf("the template leaves out messages %v", drops)
}
