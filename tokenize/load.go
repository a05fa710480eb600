package tokenize

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// fileJSON is the subset of a Hugging Face tokenizer.json that tagpr reads.
// Components stay raw until their "type" is known, so an unsupported one is
// reported by name instead of being half-parsed.
type fileJSON struct {
	Version       string           `json:"version"`
	AddedTokens   []addedTokenJSON `json:"added_tokens"`
	Normalizer    json.RawMessage  `json:"normalizer"`
	PreTokenizer  json.RawMessage  `json:"pre_tokenizer"`
	PostProcessor json.RawMessage  `json:"post_processor"`
	Decoder       json.RawMessage  `json:"decoder"`
	Model         json.RawMessage  `json:"model"`
}

type addedTokenJSON struct {
	ID         int    `json:"id"`
	Content    string `json:"content"`
	SingleWord bool   `json:"single_word"`
	LStrip     bool   `json:"lstrip"`
	RStrip     bool   `json:"rstrip"`
	Normalized bool   `json:"normalized"`
	Special    bool   `json:"special"`
}

// component is the common head of every pipeline component object.
type component struct {
	Type string `json:"type"`
}

// maxVocab bounds ids so that a corrupt file cannot make us allocate
// gigabytes for an id table.
const maxVocab = 1 << 24

// Load reads a tokenizer.json and, when a tokenizer_config.json lies beside
// it, that too (chat template, bos/eos/pad tokens). A chat_template.jinja
// beside it (where transformers' save_pretrained writes the template since
// v4.47) takes priority over the config's chat_template, as in transformers.
func Load(path string) (*Tokenizer, error) {
	raw, err := readTokenizerJSON(path)
	if err != nil {
		return nil, err
	}
	var cfgRaw []byte
	if b, err := os.ReadFile(configBeside(path)); err == nil {
		cfgRaw = b
	}
	t, err := Parse(raw, cfgRaw)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	if b, err := os.ReadFile(chatTemplateBeside(path)); err == nil {
		t.config.ChatTemplate = string(b)
	}
	t.path = path
	return t, nil
}

// readTokenizerJSON reads path; when it is missing but a sentencepiece
// tokenizer.model lies beside it (checkpoints that ship only the slow
// tokenizer's file), the error says how to write the tokenizer.json.
func readTokenizerJSON(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err == nil {
		return raw, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("load tokenizer %s: %w%s", path, err, SentencepieceHint(filepath.Dir(path)))
	}
	return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
}

// SentencepieceHint is what to add to "dir has no tokenizer.json" when dir
// holds a sentencepiece model file instead (checkpoints that ship only
// the slow tokenizer's file): how to write the tokenizer.json; else "".
func SentencepieceHint(dir string) string {
	for _, name := range []string{"tokenizer.model", "sentencepiece.bpe.model", "spiece.model"} { // Llama/Mistral, XLM-R, T5
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Sprintf("; %s has a sentencepiece %s, which tagpr does not read: write its tokenizer.json with transformers (python -c \"from transformers import AutoTokenizer; AutoTokenizer.from_pretrained('%s').save_pretrained('%s')\")", dir, name, dir, dir)
		}
	}
	return ""
}

// chatTemplateBeside is the chat_template.jinja that Load reads with path.
func chatTemplateBeside(path string) string {
	return filepath.Join(filepath.Dir(path), "chat_template.jinja")
}

// configBeside is the tokenizer_config.json that Load reads with path.
func configBeside(path string) string {
	return filepath.Join(filepath.Dir(path), "tokenizer_config.json")
}

// Files lists the files Load reads for path: the tokenizer.json and, when
// they exist, the tokenizer_config.json and chat_template.jinja beside it
// (callers that verify pinned inputs check each).
func Files(path string) []string {
	out := []string{path}
	for _, f := range []string{configBeside(path), chatTemplateBeside(path)} {
		if _, err := os.Stat(f); err == nil {
			out = append(out, f)
		}
	}
	return out
}

// LoadWithConfig reads a tokenizer.json and the tokenizer_config.json at
// configPath ("" for none), wherever it lies.
func LoadWithConfig(path, configPath string) (*Tokenizer, error) {
	raw, err := readTokenizerJSON(path)
	if err != nil {
		return nil, err
	}
	var cfgRaw []byte
	if configPath != "" {
		if cfgRaw, err = os.ReadFile(configPath); err != nil {
			return nil, fmt.Errorf("load tokenizer config %s: %w", configPath, err)
		}
	}
	t, err := Parse(raw, cfgRaw)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	t.path = path
	return t, nil
}

// Parse builds a tokenizer from the bytes of a tokenizer.json and an optional
// tokenizer_config.json (nil when absent).
func Parse(tokenizerJSON, configJSON []byte) (*Tokenizer, error) {
	var f fileJSON
	if err := json.Unmarshal(tokenizerJSON, &f); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	t := &Tokenizer{raw: tokenizerJSON}
	var err error
	if t.model, err = parseModel(f.Model); err != nil {
		return nil, fmt.Errorf("tokenizer.json: model: %w", err)
	}
	if t.normalizer, err = parseNormalizer(f.Normalizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: normalizer: %w", err)
	}
	if t.pre, err = parsePreTokenizer(f.PreTokenizer); err != nil {
		return nil, fmt.Errorf("tokenizer.json: pre_tokenizer: %w", err)
	}
	if t.post, err = parsePostProcessor(f.PostProcessor); err != nil {
		return nil, fmt.Errorf("tokenizer.json: post_processor: %w", err)
	}
	if t.decoder, err = parseDecoder(f.Decoder); err != nil {
		return nil, fmt.Errorf("tokenizer.json: decoder: %w", err)
	}
	if err := t.checkPipeline(); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if err := t.initVocab(f.AddedTokens); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if err := t.post.resolve(t); err != nil {
		return nil, fmt.Errorf("tokenizer.json: post_processor: %w", err)
	}
	if configJSON != nil {
		if t.config, err = parseConfig(configJSON); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
	} else {
		t.config = &Config{}
	}
	return t, nil
}

// checkPipeline rejects combinations tagpr cannot run exactly.
func (t *Tokenizer) checkPipeline() error {
	byteLevel := t.pre != nil && t.pre.byteLevel()
	switch m := t.model.(type) {
	case *bpeModel:
		init := m.initByteLevel
		if !byteLevel {
			init = m.initCharLevel // sentencepiece-style: characters, byte fallback
		}
		if err := init(); err != nil {
			return fmt.Errorf("model: %w", err)
		}
	case *wordPieceModel:
		if byteLevel {
			return fmt.Errorf("model WordPiece with a ByteLevel pre_tokenizer is not supported")
		}
	}
	t.byteLevel = byteLevel
	t.rewriter = rewriterOf(t.pre)
	return nil
}

// typeOf reads the "type" of a component; null or absent components give "".
func typeOf(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return "", nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return "", err
	}
	if c.Type == "" {
		return "", fmt.Errorf("component has no \"type\"")
	}
	return c.Type, nil
}

// decodeComponent decodes a component's fields (unknown fields are allowed:
// files carry options tagpr does not need, such as trim_offsets).
func decodeComponent(raw json.RawMessage, v any) error {
	return json.Unmarshal(raw, v)
}

// parseSequence reads a Sequence component: the list under key, each element
// parsed by parse; elements that parse to nil (no-ops) are dropped.
func parseSequence[T any](raw json.RawMessage, key string, parse func(json.RawMessage) (T, error)) ([]T, error) {
	var j map[string]json.RawMessage
	if err := decodeComponent(raw, &j); err != nil {
		return nil, fmt.Errorf("Sequence: %w", err)
	}
	var items []json.RawMessage
	if list, ok := j[key]; ok {
		if err := decodeComponent(list, &items); err != nil {
			return nil, fmt.Errorf("Sequence: %s: %w", key, err)
		}
	}
	var q []T
	for i, r := range items {
		x, err := parse(r)
		if err != nil {
			return nil, fmt.Errorf("Sequence[%d]: %w", i, err)
		}
		if any(x) != nil { // T is an interface: nil means a no-op component
			q = append(q, x)
		}
	}
	return q, nil
}
