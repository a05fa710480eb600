package tokenize_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/tagpr/tagpr/tokenize"
)

// TestChatMatchesTransformers holds RenderChat and EncodeChat to
// transformers' apply_chat_template(tokenize=False) with the pinned Qwen3 and
// Llama-3 templates, recorded by scripts/tokenize/hf_chat.py into
// testdata/chat_hf.json: multi-turn chats with system prompts, empty content,
// <think> blocks, and content ending in whitespace or in ASCII separators
// (\x1c-\x1f), which Jinja's trim (Python's str.strip) removes.
func TestChatMatchesTransformers(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "chat_hf.json"))
	if err != nil {
		t.Fatal(err)
	}
	type rendered struct {
		Text string  `json:"text"`
		IDs  []int64 `json:"ids"`
	}
	var fx struct {
		Reference  string               `json:"reference"`
		Chats      [][]tokenize.Message `json:"chats"`
		Tokenizers map[string][]map[string]rendered
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	for name, rows := range fx.Tokenizers {
		tok := pinnedTokenizer(t, name)
		for i, msgs := range fx.Chats {
			for key, want := range rows[i] {
				e, err := tok.EncodeChat(msgs, key == "gen")
				if err != nil {
					t.Errorf("%s chat %d (%s): %v", name, i, key, err)
					continue
				}
				if e.Text != want.Text {
					t.Errorf("%s chat %d (%s):\n got %q\n%s %q", name, i, key, e.Text, fx.Reference, want.Text)
				} else if !sameIDs(e.IDs, want.IDs) {
					t.Errorf("%s chat %d (%s): ids %v, %s %v", name, i, key, e.IDs, fx.Reference, want.IDs)
				}
			}
		}
	}
}
