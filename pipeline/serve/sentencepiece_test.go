package serve

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/tagpr/tagpr/onnx/lm"
	"github.com/tagpr/tagpr/onnx/ort"
	"github.com/tagpr/tagpr/tokenize"
)

// openSentencepieceModel serves a small random model with a sentencepiece
// tokenizer (tokenize/testdata/sentencepiece/legacy, as transformers
// converts Llama 2's) and Zephyr's chat template, as TinyLlama ships them.
func openSentencepieceModel(t *testing.T) *Model {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join("..", "..", "tokenize", "testdata", "sentencepiece", "legacy", "tokenizer.json")
	tj, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tpl, err := os.ReadFile(filepath.Join("..", "..", "tokenize", "chattemplates", "zephyr.jinja"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := json.Marshal(map[string]any{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "chat_template": string(tpl)})
	for name, b := range map[string][]byte{"tokenizer.json": tj, "tokenizer_config.json": cfg} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tok, err := tokenize.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	eos, _ := tok.TokenID("</s>")
	bos, _ := tok.TokenID("<s>")
	mc := lm.Config{Arch: lm.Llama, Layers: 1, DModel: 32, Heads: 2, KVHeads: 1, Vocab: tok.VocabSize(),
		MaxPositions: 2048, Seed: 7, InitStd: 0.05, EOS: eos, BOS: bos}
	if _, err := lm.WriteModelDir(mc, dir, false); err != nil {
		t.Fatal(err)
	}
	m, err := Open(dir, OpenOptions{Session: ort.Options{IntraOpThreads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// A sentencepiece model streams what its whole answer shows: the decoder's
// Strip takes the space of the first token only, and a character written
// as <0xNN> byte tokens waits for its last byte. Chats render in Zephyr's
// format, and each log-prob's bytes are its token's (a byte token's one
// byte, "▁" a space).
func TestSentencepieceModelServes(t *testing.T) {
	m := openSentencepieceModel(t)
	if f := m.Tok.ChatFormat(); f.Name != "zephyr" {
		t.Fatalf("chat format %q, want zephyr", f.Name)
	}
	text := "Grüße, 𝔘𝔫𝔦 世界! a  b"
	var got strings.Builder
	for _, piece := range streamPieces(m, m.EncodeText(text), nil, lm.FinishLength) {
		if strings.ContainsRune(piece, '\uFFFD') {
			t.Errorf("piece %q holds a broken character", piece)
		}
		got.WriteString(piece)
	}
	if got.String() != text {
		t.Errorf("streamed %q, want %q", got.String(), text)
	}

	ts := startServer(t, m, Options{})
	body := func() map[string]any {
		return chatBody(m, "Tell me a story.", map[string]any{"max_tokens": 24, "ignore_eos": true, "logprobs": true})
	}
	code, whole := post(t, ts.base+"/v1/chat/completions", body())
	if code != 200 {
		t.Fatalf("chat: %d %v", code, whole)
	}
	var streamed strings.Builder
	for _, ev := range postStream(t, ts.base+"/v1/chat/completions", body()) {
		streamed.WriteString(str(field(ev, "choices", 0, "delta", "content")))
	}
	content := str(field(whole, "choices", 0, "message", "content"))
	if streamed.String() != content {
		t.Errorf("streamed %q, whole %q", streamed.String(), content)
	}
	lps, _ := field(whole, "choices", 0, "logprobs", "content").([]any)
	var raw []byte
	for _, e := range lps {
		for _, b := range field(e, "bytes").([]any) {
			raw = append(raw, byte(intOf(b)))
		}
	}
	// The bytes add up to the text, but for the space Strip took and a
	// byte token the model left without the rest of its character, which
	// the text shows as U+FFFD (one per byte, as HF's ByteFallback).
	var lossy strings.Builder
	for s := string(raw); s != ""; {
		r, size := utf8.DecodeRuneInString(s)
		lossy.WriteRune(r)
		s = s[size:]
	}
	if len(lps) != 24 || strings.TrimPrefix(lossy.String(), " ") != content {
		t.Errorf("%d log-probs with bytes %q; content %q", len(lps), raw, content)
	}
}
