package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Config is what tagpr reads from tokenizer_config.json.
type Config struct {
	BOS, EOS, PAD, UNK string
	AddBOS, AddEOS     bool
	ChatTemplate       string // the raw Jinja template, if any
	ModelMaxLength     int
	PaddingSide        string
}

// tokenString accepts both "tok" and {"content": "tok", ...}.
type tokenString string

func (s *tokenString) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*s = tokenString(str)
		return nil
	}
	var obj struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &obj); err != nil {
		return fmt.Errorf("want a token string or {\"content\": ...}")
	}
	*s = tokenString(obj.Content)
	return nil
}

// chatTemplate accepts a string or a list of {"name", "template"}.
type chatTemplate string

func (c *chatTemplate) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		*c = chatTemplate(str)
		return nil
	}
	var list []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("chat_template: want a string or a list of {name, template}")
	}
	for _, t := range list {
		if t.Name == "default" || len(list) == 1 {
			*c = chatTemplate(t.Template)
		}
	}
	return nil
}

func parseConfig(raw []byte) (*Config, error) {
	var j struct {
		BOS            *tokenString  `json:"bos_token"`
		EOS            *tokenString  `json:"eos_token"`
		PAD            *tokenString  `json:"pad_token"`
		UNK            *tokenString  `json:"unk_token"`
		AddBOS         *bool         `json:"add_bos_token"`
		AddEOS         *bool         `json:"add_eos_token"`
		ChatTemplate   *chatTemplate `json:"chat_template"`
		ModelMaxLength *float64      `json:"model_max_length"`
		PaddingSide    string        `json:"padding_side"`
	}
	if err := json.Unmarshal(raw, &j); err != nil {
		return nil, err
	}
	c := &Config{PaddingSide: j.PaddingSide}
	str := func(p *tokenString) string {
		if p == nil {
			return ""
		}
		return string(*p)
	}
	c.BOS, c.EOS, c.PAD, c.UNK = str(j.BOS), str(j.EOS), str(j.PAD), str(j.UNK)
	if j.AddBOS != nil {
		c.AddBOS = *j.AddBOS
	}
	if j.AddEOS != nil {
		c.AddEOS = *j.AddEOS
	}
	if j.ChatTemplate != nil {
		c.ChatTemplate = string(*j.ChatTemplate)
	}
	if j.ModelMaxLength != nil && *j.ModelMaxLength > 0 && *j.ModelMaxLength < 1<<40 {
		c.ModelMaxLength = int(*j.ModelMaxLength)
	}
	return c, nil
}

// chatMLJinja is the ChatML chat_template written for trained tokenizers,
// so HF tokenizers and transformers.js render what RenderChat renders.
const chatMLJinja = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"

// SaveConfig writes a tokenizer_config.json with the bos/eos/pad/unk tokens
// and chat template of Config (atomically).
func (t *Tokenizer) SaveConfig(path string) error {
	doc := map[string]any{"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": false}
	for k, v := range map[string]string{"bos_token": t.config.BOS, "eos_token": t.config.EOS, "pad_token": t.config.PAD,
		"unk_token": t.config.UNK, "chat_template": t.config.ChatTemplate, "padding_side": t.config.PaddingSide} {
		if v != "" {
			doc[k] = v
		}
	}
	if t.config.ModelMaxLength > 0 {
		doc["model_max_length"] = t.config.ModelMaxLength
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("save tokenizer config %s: %w", path, err)
	}
	if err := writeFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("save tokenizer config %s: %w", path, err)
	}
	return nil
}
