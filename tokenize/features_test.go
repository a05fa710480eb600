package tokenize_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tagpr/tagpr/tokenize"
)

func TestChatTemplates(t *testing.T) {
	msgs := []tokenize.Message{
		{Role: "system", Content: "You are helpful."},
		{Role: "user", Content: " Hi there\n"},
		{Role: "assistant", Content: "Hello! How can I help?"},
		{Role: "user", Content: "Rate it"},
	}
	// Rendered by the JS reference's Jinja interpreter (apply_chat_template,
	// add_generation_prompt) from the Llama-3 tokenizer_config.json.
	const llama3JS = "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are helpful.<|eot_id|>" +
		"<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n" +
		"Hello! How can I help?<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nRate it<|eot_id|>" +
		"<|start_header_id|>assistant<|end_header_id|>\n\n"
	llama := pinnedTokenizer(t, "llama3")
	if got := llama.ChatFormat().Name; got != "llama3" {
		t.Fatalf("llama3 chat format %q", got)
	}
	text, _, err := llama.RenderChat(msgs, true)
	if err != nil {
		t.Fatal(err)
	}
	if text != llama3JS {
		t.Errorf("llama3 chat:\n got %q\nwant %q", text, llama3JS)
	}
	// Qwen3's template (ChatML plus <think> handling), rendered by Python's
	// jinja2 the way transformers does (sandboxed, trim_blocks, lstrip_blocks).
	qwen := pinnedTokenizer(t, "qwen3")
	if got := qwen.ChatFormat().Name; got != "qwen3" {
		t.Fatalf("qwen3 chat format %q", got)
	}
	m := func(role, content string) tokenize.Message { return tokenize.Message{Role: role, Content: content} }
	qwenCases := []struct {
		msgs []tokenize.Message
		gen  bool
		want string
	}{
		{msgs, true, "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n Hi there\n<|im_end|>\n<|im_start|>assistant\nHello! How can I help?<|im_end|>\n<|im_start|>user\nRate it<|im_end|>\n<|im_start|>assistant\n"},
		{[]tokenize.Message{m("user", "Which tag?"), m("assistant", "<think>\n<recall_history>space films</recall_history>\n</think>\n<answer>sci-fi</answer>")}, false,
			"<|im_start|>user\nWhich tag?<|im_end|>\n<|im_start|>assistant\n<think>\n<recall_history>space films</recall_history>\n</think>\n\n<answer>sci-fi</answer><|im_end|>\n"},
		{[]tokenize.Message{m("user", "Q1"), m("assistant", "<think>r1</think>A1"), m("user", "Q2"), m("assistant", "plain answer")}, false,
			"<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\nA1<|im_end|>\n<|im_start|>user\nQ2<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nplain answer<|im_end|>\n"},
		{[]tokenize.Message{m("system", "S"), m("user", "Q1"), m("assistant", "\n\n<think>\n\nr1\n\n</think>\n\nA1"), m("assistant", "A2")}, false,
			"<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ1<|im_end|>\n<|im_start|>assistant\n<think>\nr1\n</think>\n\nA1<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\nA2<|im_end|>\n"},
	}
	for i, c := range qwenCases {
		text, _, err = qwen.RenderChat(c.msgs, c.gen)
		if err != nil {
			t.Fatal(err)
		}
		if text != c.want {
			t.Errorf("qwen3 chat %d:\n got %q\nwant %q", i, text, c.want)
		}
	}
	// A tokenizer without a chat template gets plain ChatML.
	if got := pinnedTokenizer(t, "claude").ChatFormat().Name; got != "chatml" {
		t.Errorf("no template: format %q, want chatml", got)
	}
	if _, _, err := qwen.RenderChat([]tokenize.Message{{Role: "robot", Content: "x"}}, false); err == nil {
		t.Error("unknown role accepted")
	}
}

func TestAssistantMask(t *testing.T) {
	for _, name := range []string{"qwen3", "llama3"} {
		tok := pinnedTokenizer(t, name)
		msgs := []tokenize.Message{
			{Role: "user", Content: "Which tag fits?\n\n[1] A movie about space"},
			{Role: "assistant", Content: "<think>\n<recall_history>space films</recall_history>\n</think>\n<answer>sci-fi</answer>"},
		}
		enc, err := tok.EncodeChat(msgs, false)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(enc.IDs, tok.Encode(enc.Text)) {
			t.Fatalf("%s: EncodeChat ids differ from Encode(rendered text)", name)
		}
		var masked []int64
		for i, m := range enc.AssistantMask {
			if m {
				masked = append(masked, enc.IDs[i])
			}
		}
		got, err := tok.Decode(masked, false)
		if err != nil {
			t.Fatal(err)
		}
		f := tok.ChatFormat()
		want := msgs[1].Content
		if f.AssistantBody != nil {
			want = f.AssistantBody(want, true, true)
		}
		want += f.EndOfTurn
		if got != want {
			t.Errorf("%s: assistant mask covers %q, want %q", name, got, want)
		}
		// The mask is contiguous and ends the sequence (apart from ChatML's
		// trailing newline).
		first := -1
		for i, m := range enc.AssistantMask {
			if m && first < 0 {
				first = i
			}
			if first >= 0 && !m && i < len(enc.IDs)-1 {
				t.Errorf("%s: mask has a hole at %d", name, i)
			}
		}
	}
}

func TestEncodePromptTruncatesProfileOnly(t *testing.T) {
	tok := pinnedTokenizer(t, "qwen3")
	var items []string
	for i := 0; i < 40; i++ {
		items = append(items, strings.Repeat("The user liked a long science fiction film about robots. ", 3))
	}
	p := tokenize.PromptParts{
		Instruction: "Which tag does the user give this movie?",
		Profile:     items,
		Input:       "A film about a lonely robot on Mars.",
		Answer:      "<answer>sci-fi</answer>",
	}
	full, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, 0)
	if err != nil {
		t.Fatal(err)
	}
	if full.ProfileKept != 40 {
		t.Fatalf("no budget kept %d items", full.ProfileKept)
	}
	budget := len(full.IDs) / 3
	cut, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, budget)
	if err != nil {
		t.Fatal(err)
	}
	if len(cut.IDs) > budget || cut.ProfileKept == 0 || cut.ProfileKept >= 40 {
		t.Fatalf("budget %d: %d tokens with %d items", budget, len(cut.IDs), cut.ProfileKept)
	}
	for _, must := range []string{p.Instruction, p.Input, p.Answer} {
		if !strings.Contains(cut.Text, must) {
			t.Errorf("truncated prompt lost %q", must)
		}
	}
	// One more item would not have fitted: the cut is maximal.
	more, _ := tok.EncodePrompt(tokenize.PromptParts{Instruction: p.Instruction, Profile: items[:cut.ProfileKept+1],
		Input: p.Input, Answer: p.Answer}, tokenize.DefaultPromptLayout, 0)
	if len(more.IDs) <= budget {
		t.Errorf("kept %d items but %d also fit", cut.ProfileKept, cut.ProfileKept+1)
	}
	_, err = tok.EncodePrompt(p, tokenize.DefaultPromptLayout, 10)
	if !errors.Is(err, tokenize.ErrPromptTooLong) {
		t.Errorf("tiny budget: %v, want ErrPromptTooLong", err)
	}
	// Generation prompts end with the assistant header.
	p.Answer = ""
	gen, err := tok.EncodePrompt(p, tokenize.DefaultPromptLayout, budget)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(gen.Text, "<|im_start|>assistant\n") {
		t.Errorf("generation prompt ends %q", gen.Text[len(gen.Text)-30:])
	}
}

func TestPad(t *testing.T) {
	tok := pinnedTokenizer(t, "qwen3")
	seqs := [][]int64{{1, 2, 3}, {4}, {5, 6, 7, 8, 9}}
	masks := [][]bool{{false, true, true}, {true}, {false, false, true, true, true}}
	right, err := tok.Pad(seqs, masks, tokenize.PadOptions{Side: tokenize.PadRight, PadID: -1})
	if err != nil {
		t.Fatal(err)
	}
	pad := int64(tok.PadToken())
	if id, _ := tok.TokenID("<|endoftext|>"); int64(id) != pad {
		t.Fatalf("qwen3 pad token %d, want <|endoftext|> %d", pad, id)
	}
	wantIDs := []int64{1, 2, 3, pad, pad, 4, pad, pad, pad, pad, 5, 6, 7, 8, 9}
	wantAtt := []int64{1, 1, 1, 0, 0, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1}
	wantLoss := []int64{0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 1}
	if right.Rows != 3 || right.Len != 5 || !reflect.DeepEqual(right.IDs, wantIDs) ||
		!reflect.DeepEqual(right.AttentionMask, wantAtt) || !reflect.DeepEqual(right.LossMask, wantLoss) {
		t.Errorf("right padding: %+v", right)
	}
	left, err := tok.Pad(seqs, nil, tokenize.PadOptions{Side: tokenize.PadLeft, PadID: 0, MaxLen: 4, Multiple: 4})
	if err != nil {
		t.Fatal(err)
	}
	wantLeft := []int64{0, 1, 2, 3, 0, 0, 0, 4, 6, 7, 8, 9}
	if left.Len != 4 || !reflect.DeepEqual(left.IDs, wantLeft) || left.LossMask != nil ||
		!reflect.DeepEqual(left.Lengths, []int{3, 1, 4}) {
		t.Errorf("left padding: %+v", left)
	}
	if _, err := tok.Pad(seqs, masks[:2], tokenize.PadOptions{}); err == nil {
		t.Error("mismatched masks accepted")
	}
}

func TestRegisterTags(t *testing.T) {
	// A fresh copy: registration mutates the tokenizer.
	tok, err := tokenize.Load(pinnedPath(t, "qwen3-tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	before := tok.VocabSize()
	thinkID, _ := tok.TokenID("<think>")
	tax := []string{"recall_history", "infer_preference", "conclude"}
	ids, size := tok.RegisterTags(tax)
	if len(ids) != 4+2*len(tax) {
		t.Fatalf("%d ids", len(ids))
	}
	if ids[0] != thinkID {
		t.Errorf("<think> moved from %d to %d", thinkID, ids[0])
	}
	if size <= before || size != tok.VocabSize() {
		t.Errorf("vocab size %d → %d", before, size)
	}
	text := "<think>\n<recall_history>liked robots</recall_history>\n</think>\n<answer>sci-fi</answer>"
	got := tok.Encode(text)
	for _, tag := range []string{"<recall_history>", "</recall_history>", "<answer>", "</answer>"} {
		id, _ := tok.TokenID(tag)
		found := false
		for _, g := range got {
			found = found || g == id
		}
		if !found {
			t.Errorf("%s is not one token in %v", tag, got)
		}
	}
	back, err := tok.Decode(got, true)
	if err != nil || back != text {
		t.Errorf("decode with skipSpecial: %q, %v (tags are not special and must stay)", back, err)
	}
	// Saved and reloaded, the tags keep their ids.
	path := filepath.Join(t.TempDir(), "tokenizer.json")
	if err := tok.Save(path); err != nil {
		t.Fatal(err)
	}
	re, err := tokenize.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(re.Encode(text), got) {
		t.Error("reloaded tokenizer encodes tags differently")
	}
}

func TestOffsets(t *testing.T) {
	text := "Café  naïve\r\n\tit's 12345 <|im_end|> 東京 👨‍👩‍👧 e\u0301"
	for _, name := range []string{"qwen3", "llama3", "bert"} {
		tok := pinnedTokenizer(t, name)
		e := tok.EncodeFull(text, false)
		if !reflect.DeepEqual(e.IDs, tok.Encode(text)) {
			t.Errorf("%s: EncodeFull ids differ from Encode", name)
		}
		prev := 0
		for i, o := range e.Offsets {
			if o[0] < prev-4 || o[0] > o[1] || o[1] > len(text) {
				t.Errorf("%s: token %d offsets %v out of order (prev end %d)", name, i, o, prev)
			}
			prev = o[1]
		}
		if name == "llama3" { // no normalizer: offsets slice the exact bytes
			var sb strings.Builder
			for _, o := range e.Offsets {
				sb.WriteString(text[o[0]:o[1]])
			}
			if sb.String() != text {
				t.Errorf("llama3 offsets reassemble %q", sb.String())
			}
		}
	}
	bert := pinnedTokenizer(t, "bert")
	e := bert.EncodeFull("Hello, World!", true)
	cls, _ := bert.TokenID("[CLS]")
	sep, _ := bert.TokenID("[SEP]")
	if e.IDs[0] != cls || e.IDs[len(e.IDs)-1] != sep || !e.Special[0] || e.Special[1] {
		t.Errorf("bert special tokens: %v %v", e.IDs, e.Special)
	}
	if got, _ := bert.Decode(e.IDs, true); got != "hello, world!" {
		t.Errorf("bert decode %q", got)
	}
	if o := e.Offsets[1]; "Hello, World!"[o[0]:o[1]] != "Hello" {
		t.Errorf("bert offsets %v", e.Offsets)
	}
}

func TestBrokenFilesNameComponent(t *testing.T) {
	good, err := os.ReadFile(filepath.Join("testdata", "trained", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]struct{ old, new, want string }{
		"model type":    {`"type":"BPE"`, `"type":"WordLevel"`, `model: unsupported model type "WordLevel"`},
		"unigram vocab": {`"type":"BPE"`, `"type":"Unigram"`, `model: Unigram: vocab must be [["piece", score], …]`},
		"pre_tokenizer": {`"type":"Split"`, `"type":"UnicodeScripts"`, `pre_tokenizer: Sequence[0]: unsupported pre_tokenizer type "UnicodeScripts"`},
		"metaspace":     {`"pretokenizers":[`, `"pretokenizers":[{"type":"Metaspace","replacement":"▁","prepend_scheme":"sometimes"},`, `pre_tokenizer: Sequence[0]: Metaspace: prepend_scheme "sometimes", want always, first or never`},
		"metaspace 2nd": {`"pretokenizers":[`, `"pretokenizers":[{"type":"Digits"},{"type":"Metaspace","replacement":"▁"},`, `pre_tokenizer: Sequence[1]: a Metaspace after other pre_tokenizers is not supported`},
		"normalizer":    {`"normalizer":{"type":"NFC"}`, `"normalizer":{"type":"Nmt"}`, `normalizer: unsupported normalizer type "Nmt"`},
		"charsmap":      {`"normalizer":{"type":"NFC"}`, `"normalizer":{"type":"Precompiled","precompiled_charsmap":""}`, `normalizer: Precompiled: precompiled_charsmap: 0 bytes`},
		"decoder":       {`"decoder":{"type":"ByteLevel"`, `"decoder":{"type":"CTC"`, `decoder: unsupported decoder type "CTC"`},
		"regex":         {`"Regex":"(?i:`, `"Regex":"((?i:`, `pre_tokenizer: Sequence[0]: Split: regex`},
		"merge":         {`"merges":[[`, `"merges":[["nope","x"],[`, `model: BPE: merge 0 ("nope" "x") uses a token missing from vocab`},
		"truncated":     {`"merges":[[`, `"merges":[[[`, `tokenizer.json:`},
	}
	for name, c := range cases {
		broken := strings.Replace(string(good), c.old, c.new, 1)
		if broken == string(good) {
			t.Fatalf("%s: pattern %q not in the trained tokenizer.json", name, c.old)
		}
		_, err := tokenize.Parse([]byte(broken), nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", name, err, c.want)
		}
	}
	dir := t.TempDir()
	p := filepath.Join(dir, "tokenizer.json")
	if err := os.WriteFile(p, []byte(`{"model": null}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tokenize.Load(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "model") {
		t.Errorf("load error %v should name the file and the model", err)
	}
}

func TestStopTokensAndBatchHelpers(t *testing.T) {
	qwen := pinnedTokenizer(t, "qwen3")
	imEnd, _ := qwen.TokenID("<|im_end|>")
	eot, _ := qwen.TokenID("<|endoftext|>")
	if got := qwen.StopTokens(); !reflect.DeepEqual(got, []int64{imEnd}) {
		t.Errorf("qwen3 stop tokens %v, want [%d]", got, imEnd)
	}
	// Qwen's generation_config.json names both; the model's come first.
	if got := qwen.StopTokens(eot, imEnd); !reflect.DeepEqual(got, []int64{eot, imEnd}) {
		t.Errorf("qwen3 stop tokens with the model's EOS ids %v, want [%d %d]", got, eot, imEnd)
	}
	llama := pinnedTokenizer(t, "llama3")
	eotID, _ := llama.TokenID("<|eot_id|>")
	endText, _ := llama.TokenID("<|end_of_text|>")
	if got := llama.StopTokens(); !reflect.DeepEqual(got, []int64{endText, eotID}) {
		t.Errorf("llama3 stop tokens %v, want [%d %d]", got, endText, eotID)
	}
	texts := []string{"one", "two 東京", "<|im_start|>three"}
	rows := qwen.EncodeBatch(texts)
	back, err := qwen.DecodeBatch(rows, false)
	if err != nil || !reflect.DeepEqual(back, texts) {
		t.Errorf("batch round trip %q %v", back, err)
	}
	if _, err := qwen.DecodeBatch([][]int64{{1}, {-5}}, false); err == nil || !strings.Contains(err.Error(), "row 1") {
		t.Errorf("bad id error %v", err)
	}
	ps, err := qwen.EncodePrompts([]tokenize.PromptParts{{Instruction: "a", Input: "b"}, {Instruction: "c", Input: "d", Profile: []string{"x"}}},
		tokenize.DefaultPromptLayout, 0)
	if err != nil || len(ps) != 2 || ps[1].ProfileKept != 1 {
		t.Errorf("EncodePrompts: %+v %v", ps, err)
	}
}

// Ids past the tokenizer's vocabulary (a model's padded output rows: Qwen2.5
// has 151,936 for 151,669 tokens) decode to nothing, as in HF tokenizers
// (`Tokenizer.decode([9707, 151790, 1879])` is "Hello world"); a negative
// id is an error.
func TestDecodeSkipsIDsPastTheVocabulary(t *testing.T) {
	tok, err := tokenize.Load(pinnedPath(t, "qwen3-tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	for _, skip := range []bool{true, false} {
		got, err := tok.Decode([]int64{9707, 151790, 1879}, skip)
		if err != nil || got != "Hello world" {
			t.Fatalf("decode with an id past the vocabulary (skip special %v): %q, %v; want \"Hello world\"", skip, got, err)
		}
	}
	if _, err := tok.Decode([]int64{9707, -1}, true); err == nil {
		t.Fatal("a negative id decoded")
	}
}

// TestChatTemplateJinjaBeside: transformers' save_pretrained writes the chat
// template to chat_template.jinja (not tokenizer_config.json), and that file
// takes priority; Load must read it, or a Llama-3 or Qwen3 checkpoint saved
// that way is rendered as plain ChatML.
func TestChatTemplateJinjaBeside(t *testing.T) {
	for _, name := range []string{"llama3", "qwen3"} {
		src := pinnedPath(t, name+"-tokenizer")
		raw, err := os.ReadFile(filepath.Join(filepath.Dir(src), "tokenizer_config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg map[string]any
		if err := json.Unmarshal(raw, &cfg); err != nil {
			t.Fatal(err)
		}
		tpl, _ := cfg["chat_template"].(string)
		delete(cfg, "chat_template")
		dir := t.TempDir()
		tokJSON, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		cfgJSON, _ := json.Marshal(cfg)
		for f, b := range map[string][]byte{"tokenizer.json": tokJSON, "tokenizer_config.json": cfgJSON, "chat_template.jinja": []byte(tpl)} {
			if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(dir, "tokenizer.json")
		tok, err := tokenize.Load(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.ChatFormat().Name; got != name {
			t.Errorf("%s with chat_template.jinja: chat format %q, want %q", name, got, name)
		}
		if got := tokenize.Files(path); len(got) != 3 || filepath.Base(got[2]) != "chat_template.jinja" {
			t.Errorf("%s: Files = %v, want the chat_template.jinja listed", name, got)
		}
	}
}

// TestChatTemplateUnknown: a declared template of no family tagpr renders
// (an [INST] template of a text no released model ships) is reported, since ChatFormat falls back to ChatML for
// it; none, ChatML, Qwen3 and Llama-3 templates, and a format set by hand,
// are not.
func TestChatTemplateUnknown(t *testing.T) {
	raw, err := os.ReadFile(pinnedPath(t, "qwen3-tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(tpl string) []byte {
		b, _ := json.Marshal(map[string]any{"chat_template": tpl, "eos_token": "<|im_end|>"})
		return b
	}
	const mistral = "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"
	for _, c := range []struct {
		name string
		cfg  []byte
		want bool
	}{
		{"mistral", cfg(mistral), true},
		{"none", nil, false},
		{"chatml", cfg("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n'}}{% endfor %}"), false},
	} {
		tok, err := tokenize.Parse(raw, c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.ChatTemplateUnknown(); got != c.want {
			t.Errorf("%s template: ChatTemplateUnknown %v, want %v", c.name, got, c.want)
		}
		if c.want {
			tok.SetChatFormat(tokenize.ChatML)
			if tok.ChatTemplateUnknown() {
				t.Errorf("%s template with a format set: still unknown", c.name)
			}
		}
	}
	for _, name := range []string{"qwen3", "llama3", "claude"} {
		if pinnedTokenizer(t, name).ChatTemplateUnknown() {
			t.Errorf("%s: template reported unknown", name)
		}
	}
}

// A declared chat template of another family (an [INST] template of a text
// no released model ships, here) is not
// rendered as ChatML unsaid: RenderChat refuses it, naming the setting that
// picks a format, and renders once one is set.
func TestUnknownChatTemplateRefused(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "trained", "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := []byte(`{"chat_template": "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}"}`)
	tok, err := tokenize.Parse(raw, cfg)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []tokenize.Message{{Role: "user", Content: "hi"}}
	if _, _, err := tok.RenderChat(msgs, true); err == nil || !strings.Contains(err.Error(), "tokenizer.chat_template") {
		t.Fatalf("a Mistral template rendered without a word: %v", err)
	}
	tok.SetChatFormat(tokenize.ChatML)
	if text, _, err := tok.RenderChat(msgs, true); err != nil || !strings.HasPrefix(text, "<|im_start|>user\nhi") {
		t.Fatalf("with ChatML set: %q, %v", text, err)
	}
}

// A character cut between tokens decodes to one U+FFFD per maximal invalid
// subpart, as String::from_utf8_lossy in HF tokenizers writes it (tokenizers
// 0.23.3: Qwen3's ids of "४" cut after two of its three bytes give "४�",
// not "४��").
func TestDecodeCutCharacterOneReplacement(t *testing.T) {
	tok := pinnedTokenizer(t, "qwen3")
	for _, c := range []struct {
		ids  []int64
		want string
	}{
		{[]int64{12619, 103, 12619}, "४\uFFFD"},
		{[]int64{145665, 378}, "👧\uFFFD"},
		{[]int64{481, 151645, 38851, 378}, " -<|im_end|>ि\uFFFD"},
	} {
		if got, err := tok.Decode(c.ids, false); err != nil || got != c.want {
			t.Errorf("Decode(%v) = %q, %v; want %q", c.ids, got, err, c.want)
		}
	}
}

// TestQwen3ThinkingTemplate: a Qwen3 template whose generation prompt opens
// the think block (Qwen3 Thinking-2507: the pinned Qwen3 template without
// its enable_thinking switch and with '<|im_start|>assistant\n<think>\n')
// renders that prompt, and a completion decodes as the whole turn, <think>
// first. Qwen3's own template (the switch, no opener) stays qwen3.
func TestQwen3ThinkingTemplate(t *testing.T) {
	raw, err := os.ReadFile(pinnedPath(t, "qwen3-tokenizer"))
	if err != nil {
		t.Fatal(err)
	}
	var pinned map[string]any
	b, err := os.ReadFile(pinnedPath(t, "qwen3-tokenizer-config"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &pinned); err != nil {
		t.Fatal(err)
	}
	hybrid := pinned["chat_template"].(string)
	const gen = "{{- '<|im_start|>assistant\\n' }}\n    {%- if enable_thinking is defined and enable_thinking is false %}\n        {{- '<think>\\n\\n</think>\\n\\n' }}\n    {%- endif %}"
	if !strings.Contains(hybrid, gen) {
		t.Fatal("the pinned Qwen3 template's generation prompt is not the one this test rewrites")
	}
	thinking := strings.Replace(hybrid, gen, "{{- '<|im_start|>assistant\\n<think>\\n' }}", 1)
	for _, c := range []struct{ tpl, want, prompt string }{
		{hybrid, "qwen3", "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n"},
		{thinking, "qwen3-thinking", "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n<think>\n"},
	} {
		pinned["chat_template"] = c.tpl
		cfg, _ := json.Marshal(pinned)
		tok, err := tokenize.Parse(raw, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if got := tok.ChatFormat().Name; got != c.want {
			t.Fatalf("chat format %q, want %q", got, c.want)
		}
		text, _, err := tok.RenderChatWith([]tokenize.Message{{Role: "user", Content: "Q"}}, tokenize.ChatOptions{AddGenerationPrompt: true, DisableThinking: true})
		if err != nil {
			t.Fatal(err)
		}
		if c.want == "qwen3" {
			c.prompt += "<think>\n\n</think>\n\n" // the switch the thinking template does not have
		}
		if text != c.prompt {
			t.Errorf("%s prompt %q, want %q", c.want, text, c.prompt)
		}
		const reply = "r</think>\n\n<answer>x</answer>"
		got, err := tok.DecodeCompletion(tok.Encode(reply))
		if err != nil {
			t.Fatal(err)
		}
		want := reply
		if c.want == "qwen3-thinking" {
			want = "<think>\n" + reply
		}
		if got != want {
			t.Errorf("%s completion %q, want %q", c.want, got, want)
		}
	}
	if f, ok := tokenize.ChatFormatByName("qwen3-thinking"); !ok || f.Opens != "<think>\n" {
		t.Errorf("qwen3-thinking by name: %v %q", ok, f.Opens)
	}
}
