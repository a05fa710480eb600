package serve

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
)

// The OpenAI wire format, as much of it as tagpr serves. Request fields
// tagpr does not implement are refused when set to anything but their
// default, so a client never gets a silently different answer.

// samplingParams are shared by chat and text completions.
type samplingParams struct {
	Model         string         `json:"model"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options"`
	N             *int           `json:"n"`
	Temperature   *float64       `json:"temperature"`
	TopP          *float64       `json:"top_p"`
	TopK          *int           `json:"top_k"` // vLLM's extension
	MaxTokens     *int           `json:"max_tokens"`
	Stop          stopList       `json:"stop"`
	Seed          *int64         `json:"seed"`
	IgnoreEOS     bool           `json:"ignore_eos"` // vLLM's extension (benchmarks)
	User          string         `json:"user"`
	// OpenAI's penalties, over the tokens generated so far, and vLLM's
	// (transformers') repetition_penalty, over the prompt's too.
	FrequencyPenalty  *float64 `json:"frequency_penalty"`
	PresencePenalty   *float64 `json:"presence_penalty"`
	RepetitionPenalty *float64 `json:"repetition_penalty"`

	// Accepted only at their defaults.
	LogitBias map[string]any    `json:"logit_bias"`
	Metadata  map[string]string `json:"metadata"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// jsonKind is how a type error names the JSON value b.
func jsonKind(b []byte) string {
	switch c := strings.TrimSpace(string(b)); {
	case c == "":
		return "value"
	case c[0] == '{':
		return "object"
	case c[0] == '[':
		return "list holding something other than strings"
	case c == "null":
		return "null"
	case c[0] == '"':
		return "string"
	case c == "true" || c == "false":
		return "bool"
	default:
		return "number " + c
	}
}

// stopList is "stop": a string or a list of strings.
type stopList []string

func (s *stopList) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = nil
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = stopList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		// A type error, so the decoder names the field ("stop").
		return &json.UnmarshalTypeError{Value: jsonKind(b), Type: reflect.TypeOf(*s)}
	}
	*s = many
	return nil
}

type chatRequest struct {
	samplingParams
	Messages            []chatMessageIn `json:"messages"`
	MaxCompletionTokens *int            `json:"max_completion_tokens"`
	LogProbs            bool            `json:"logprobs"`
	TopLogProbs         *int            `json:"top_logprobs"`
	// SeparateReasoning puts the <think> part in reasoning_content (SGLang's
	// name); nil: the server's --reasoning-parser setting.
	SeparateReasoning *bool `json:"separate_reasoning"`
	// ChatTemplateKwargs are extra arguments of the chat template (vLLM's
	// and SGLang's name); tagpr takes enable_thinking only.
	ChatTemplateKwargs map[string]json.RawMessage `json:"chat_template_kwargs"`

	Tools             []json.RawMessage `json:"tools"`
	ToolChoice        json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls"`
	ResponseFormat    *struct {
		Type string `json:"type"`
	} `json:"response_format"`
}

type chatMessageIn struct {
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	Name             string          `json:"name"`
	ReasoningContent string          `json:"reasoning_content"`
	// ToolCalls is read only to refuse it by name (tool calling is not
	// supported), not as an unknown field.
	ToolCalls json.RawMessage `json:"tool_calls"`
}

// null reports whether raw is absent or JSON null.
func null(raw json.RawMessage) bool {
	return len(raw) == 0 || strings.TrimSpace(string(raw)) == "null"
}

// text is a message's content: a string or a list of text parts.
func (m chatMessageIn) text() (string, error) {
	if null(m.Content) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(m.Content, &s); err == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(m.Content, &parts); err != nil {
		return "", fmt.Errorf("content: want a string or a list of {\"type\": \"text\", \"text\": …} parts")
	}
	var sb strings.Builder
	for i, p := range parts {
		if p.Type != "text" {
			return "", fmt.Errorf("content part %d has type %q; this model reads text only", i, p.Type)
		}
		sb.WriteString(p.Text)
	}
	return sb.String(), nil
}

type completionRequest struct {
	samplingParams
	Prompt   json.RawMessage `json:"prompt"`
	LogProbs *int            `json:"logprobs"`
	Echo     bool            `json:"echo"`
	Suffix   *string         `json:"suffix"`
	BestOf   *int            `json:"best_of"`
}

// prompts reads "prompt": a string, a list of strings, a list of token ids
// or a list of lists of token ids.
func (r completionRequest) prompts() ([]string, [][]int64, error) {
	raw := r.Prompt
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil, fmt.Errorf("prompt is required")
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil, nil
	}
	var texts []string
	if json.Unmarshal(raw, &texts) == nil && len(texts) > 0 {
		return texts, nil, nil
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return nil, [][]int64{ids}, nil
	}
	var many [][]int64
	if json.Unmarshal(raw, &many) == nil && len(many) > 0 {
		return nil, many, nil
	}
	return nil, nil, fmt.Errorf("prompt: want a string, a list of strings, a list of token ids or a list of such lists (non-empty)")
}

// Responses.

type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type chatMessageOut struct {
	Role             string `json:"role"`
	Content          string `json:"content"`
	ReasoningContent string `json:"reasoning_content,omitempty"`
}

type chatDelta struct {
	Role             string  `json:"role,omitempty"`
	Content          *string `json:"content,omitempty"`
	ReasoningContent *string `json:"reasoning_content,omitempty"`
}

type topLogProb struct {
	Token   string  `json:"token"`
	LogProb float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

type chatLogProb struct {
	topLogProb
	TopLogProbs []topLogProb `json:"top_logprobs"`
}

type chatLogProbs struct {
	Content []chatLogProb `json:"content"`
}

type chatChoice struct {
	Index        int             `json:"index"`
	Message      *chatMessageOut `json:"message,omitempty"`
	Delta        *chatDelta      `json:"delta,omitempty"`
	LogProbs     *chatLogProbs   `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
	StopReason   any             `json:"stop_reason,omitempty"`
}

type chatResponse struct {
	ID      string       `json:"id"`
	Object  string       `json:"object"`
	Created int64        `json:"created"`
	Model   string       `json:"model"`
	Choices []chatChoice `json:"choices"`
	Usage   *usage       `json:"usage,omitempty"`
}

type completionLogProbs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogProbs []float32            `json:"token_logprobs"`
	TopLogProbs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

type completionChoice struct {
	Index        int                 `json:"index"`
	Text         string              `json:"text"`
	LogProbs     *completionLogProbs `json:"logprobs"`
	FinishReason *string             `json:"finish_reason"`
	StopReason   any                 `json:"stop_reason,omitempty"`
}

type completionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"`
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []completionChoice `json:"choices"`
	Usage   *usage             `json:"usage,omitempty"`
}

type modelCard struct {
	ID          string `json:"id"`
	Object      string `json:"object"`
	Created     int64  `json:"created"`
	OwnedBy     string `json:"owned_by"`
	MaxModelLen int    `json:"max_model_len"`
}

// apiError is the OpenAI error body: {"error": {message, type, param, code}}.
type apiError struct {
	Status  int     `json:"-"`
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) Error() string { return e.Message }

func newError(status int, typ, code, param, format string, a ...any) *apiError {
	e := &apiError{Status: status, Type: typ, Message: fmt.Sprintf(format, a...)}
	if param != "" {
		e.Param = &param
	}
	if code != "" {
		e.Code = &code
	}
	return e
}

// badRequest is a 400 invalid_request_error naming the parameter.
func badRequest(param, format string, a ...any) *apiError {
	return newError(400, "invalid_request_error", "", param, format, a...)
}
