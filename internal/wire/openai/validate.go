package openai

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
)

// Limits cortex enforces on requests, so one request cannot make a neuron
// do unbounded work before generation even starts.
const (
	MaxStopSequences = 64
	MaxTools         = 512
	MaxTopLogprobs   = 20
)

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ValidName reports whether s is a valid tool or schema name:
// ^[a-zA-Z0-9_-]{1,64}$, as OpenAI requires.
func ValidName(s string) bool { return nameRE.MatchString(s) }

// Chat roles.
const (
	RoleSystem    = "system"
	RoleDeveloper = "developer"
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleTool      = "tool"
)

// Validate checks what the neuron cannot serve or OpenAI would reject: the
// model and messages are present, roles are known, tool messages name their
// call, sampling values are in range, n is 1, tool names are valid and
// unique, tool_choice names a defined tool, and response_format is well
// formed. It returns a 400 *Error naming the offending field, or nil.
func (r *ChatRequest) Validate() error {
	if r.Model == "" {
		return MissingParameter("model")
	}
	if len(r.Messages) == 0 {
		return InvalidRequest("messages", CodeInvalidValue, "Invalid 'messages': empty array. Expected an array with minimum length 1.")
	}
	for i := range r.Messages {
		if err := validateMessage(&r.Messages[i], fmt.Sprintf("messages[%d]", i)); err != nil {
			return err
		}
	}
	if err := validateSampling(r.N, r.Temperature, r.TopP, r.MinP, r.PresencePenalty, r.FrequencyPenalty); err != nil {
		return err
	}
	if err := validatePositive("max_tokens", r.MaxTokens); err != nil {
		return err
	}
	if err := validatePositive("max_completion_tokens", r.MaxCompletionTokens); err != nil {
		return err
	}
	if r.TopK != nil && *r.TopK < 0 {
		return InvalidRequest("top_k", CodeInvalidValue, "Invalid 'top_k': must be 0 or greater, got %d.", *r.TopK)
	}
	if r.TopLogprobs != nil {
		if *r.TopLogprobs < 0 || *r.TopLogprobs > MaxTopLogprobs {
			return InvalidRequest("top_logprobs", CodeInvalidValue, "Invalid 'top_logprobs': must be between 0 and %d, got %d.", MaxTopLogprobs, *r.TopLogprobs)
		}
		if !r.Logprobs && *r.TopLogprobs > 0 {
			return InvalidRequest("top_logprobs", CodeInvalidValue, "Invalid 'top_logprobs': requires 'logprobs' to be true.")
		}
	}
	if err := validateStop(r.Stop); err != nil {
		return err
	}
	if err := validateTools(r.Tools, r.ToolChoice); err != nil {
		return err
	}
	if err := r.ResponseFormat.validate(); err != nil {
		return err
	}
	if r.ThinkingBudgetTokens != nil && *r.ThinkingBudgetTokens < 0 {
		return InvalidRequest("thinking_budget_tokens", CodeInvalidValue, "Invalid 'thinking_budget_tokens': must be 0 or greater.")
	}
	return nil
}

func validateMessage(m *Message, path string) error {
	switch m.Role {
	case RoleSystem, RoleDeveloper, RoleUser:
		if m.Content.IsNull() {
			return MissingParameter(path + ".content")
		}
	case RoleAssistant:
		if m.Content.IsNull() && len(m.ToolCalls) == 0 && m.ReasoningContent == "" && m.Refusal == nil {
			return InvalidRequest(path+".content", CodeMissingParameter,
				"Invalid '%s': an assistant message needs 'content' or 'tool_calls'.", path)
		}
		for j, tc := range m.ToolCalls {
			p := fmt.Sprintf("%s.tool_calls[%d]", path, j)
			if tc.ID == "" {
				return MissingParameter(p + ".id")
			}
			if tc.Type != "" && tc.Type != "function" {
				return Unsupported(p+".type", "Invalid '%s.type': only 'function' tool calls are supported, got '%s'.", p, tc.Type)
			}
			if tc.Function.Name == "" {
				return MissingParameter(p + ".function.name")
			}
		}
	case RoleTool:
		if m.ToolCallID == "" {
			return MissingParameter(path + ".tool_call_id")
		}
	case "function":
		return Unsupported(path+".role", "Invalid '%s.role': the deprecated 'function' role is not supported; use 'tool' messages.", path)
	case "":
		return MissingParameter(path + ".role")
	default:
		return InvalidRequest(path+".role", CodeInvalidValue,
			"Invalid '%s.role': '%s'. Supported roles are 'system', 'developer', 'user', 'assistant' and 'tool'.", path, m.Role)
	}
	for j, p := range m.Content.Parts {
		pp := fmt.Sprintf("%s.content[%d]", path, j)
		switch p.Type {
		case "text":
		case "image_url":
			if m.Role != RoleUser {
				return Unsupported(pp+".type", "Invalid '%s': image content is only supported in user messages.", pp)
			}
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return MissingParameter(pp + ".image_url.url")
			}
		case "":
			return MissingParameter(pp + ".type")
		default:
			return Unsupported(pp+".type", "Invalid '%s.type': content parts of type '%s' are not supported; use 'text' or 'image_url'.", pp, p.Type)
		}
	}
	return nil
}

func validateSampling(n *int, temperature, topP, minP, presence, frequency *float32) error {
	if n != nil && *n != 1 {
		if *n < 1 {
			return InvalidRequest("n", CodeInvalidValue, "Invalid 'n': must be at least 1, got %d.", *n)
		}
		return Unsupported("n", "Invalid 'n': only n=1 is supported, got %d.", *n)
	}
	ranges := []struct {
		name     string
		v        *float32
		min, max float32
	}{
		{"temperature", temperature, 0, 2},
		{"top_p", topP, 0, 1},
		{"min_p", minP, 0, 1},
		{"presence_penalty", presence, -2, 2},
		{"frequency_penalty", frequency, -2, 2},
	}
	for _, rg := range ranges {
		if rg.v == nil {
			continue
		}
		if v := *rg.v; v != v || v < rg.min || v > rg.max { // v != v: NaN
			return InvalidRequest(rg.name, CodeInvalidValue, "Invalid '%s': must be between %g and %g, got %g.", rg.name, rg.min, rg.max, v)
		}
	}
	return nil
}

func validatePositive(name string, v *int) error {
	if v != nil && *v < 1 {
		return InvalidRequest(name, CodeInvalidValue, "Invalid '%s': must be at least 1, got %d.", name, *v)
	}
	return nil
}

func validateStop(stop StringOrList) error {
	if len(stop) > MaxStopSequences {
		return InvalidRequest("stop", CodeInvalidValue, "Invalid 'stop': at most %d sequences are supported, got %d.", MaxStopSequences, len(stop))
	}
	for i, s := range stop {
		if s == "" {
			return InvalidRequest(fmt.Sprintf("stop[%d]", i), CodeInvalidValue, "Invalid 'stop[%d]': stop sequences must not be empty.", i)
		}
	}
	return nil
}

func validateTools(tools []Tool, choice *ToolChoice) error {
	if len(tools) > MaxTools {
		return InvalidRequest("tools", CodeInvalidValue, "Invalid 'tools': at most %d tools are supported, got %d.", MaxTools, len(tools))
	}
	names := make(map[string]bool, len(tools))
	for i, t := range tools {
		p := fmt.Sprintf("tools[%d]", i)
		if t.Type != "function" {
			return Unsupported(p+".type", "Invalid '%s.type': only 'function' tools are supported, got '%s'.", p, t.Type)
		}
		if !ValidName(t.Function.Name) {
			return InvalidRequest(p+".function.name", CodeInvalidValue,
				"Invalid '%s.function.name': '%s' must match ^[a-zA-Z0-9_-]{1,64}$.", p, t.Function.Name)
		}
		if names[t.Function.Name] {
			return InvalidRequest(p+".function.name", CodeInvalidValue, "Invalid '%s.function.name': tool '%s' is defined twice.", p, t.Function.Name)
		}
		names[t.Function.Name] = true
		if len(t.Function.Parameters) > 0 && !isObject(t.Function.Parameters) {
			return InvalidRequest(p+".function.parameters", CodeInvalidType, "Invalid '%s.function.parameters': must be a JSON Schema object.", p)
		}
	}
	if choice == nil {
		return nil
	}
	switch choice.Mode {
	case "required":
		if len(tools) == 0 {
			return InvalidRequest("tool_choice", CodeInvalidValue, "Invalid 'tool_choice': 'required' needs at least one tool in 'tools'.")
		}
	case "function":
		if !names[choice.Function] {
			return InvalidRequest("tool_choice", CodeInvalidValue, "Invalid 'tool_choice': function '%s' is not defined in 'tools'.", choice.Function)
		}
	}
	return nil
}

func (f *ResponseFormat) validate() error {
	if f == nil {
		return nil
	}
	switch f.Type {
	case "text", "json_object":
	case "json_schema":
		if f.JSONSchema == nil {
			return MissingParameter("response_format.json_schema")
		}
		if !ValidName(f.JSONSchema.Name) {
			return InvalidRequest("response_format.json_schema.name", CodeInvalidValue,
				"Invalid 'response_format.json_schema.name': '%s' must match ^[a-zA-Z0-9_-]{1,64}$.", f.JSONSchema.Name)
		}
		if len(f.JSONSchema.Schema) > 0 && !isObject(f.JSONSchema.Schema) {
			return InvalidRequest("response_format.json_schema.schema", CodeInvalidType, "Invalid 'response_format.json_schema.schema': must be a JSON Schema object.")
		}
	case "":
		return MissingParameter("response_format.type")
	default:
		return InvalidRequest("response_format.type", CodeInvalidValue,
			"Invalid 'response_format.type': '%s'. Supported values are 'text', 'json_object' and 'json_schema'.", f.Type)
	}
	return nil
}

func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimSpace(raw)
	return len(raw) > 0 && raw[0] == '{' && json.Valid(raw)
}

// Validate checks a completions request: model and prompt present, sampling
// values in range, n is 1.
func (r *CompletionRequest) Validate() error {
	if r.Model == "" {
		return MissingParameter("model")
	}
	if r.Prompt == nil {
		return MissingParameter("prompt")
	}
	if err := validateSampling(r.N, r.Temperature, r.TopP, r.MinP, r.PresencePenalty, r.FrequencyPenalty); err != nil {
		return err
	}
	if err := validatePositive("max_tokens", r.MaxTokens); err != nil {
		return err
	}
	if r.TopK != nil && *r.TopK < 0 {
		return InvalidRequest("top_k", CodeInvalidValue, "Invalid 'top_k': must be 0 or greater, got %d.", *r.TopK)
	}
	if r.Logprobs != nil && (*r.Logprobs < 0 || *r.Logprobs > 5) {
		return InvalidRequest("logprobs", CodeInvalidValue, "Invalid 'logprobs': must be between 0 and 5, got %d.", *r.Logprobs)
	}
	return validateStop(r.Stop)
}

// Validate checks an embeddings request: model present, input a non-empty
// string, list of strings, token list or list of token lists, and
// encoding_format float or base64.
func (r *EmbeddingRequest) Validate() error {
	if r.Model == "" {
		return MissingParameter("model")
	}
	if _, err := r.Inputs(); err != nil {
		return err
	}
	switch r.EncodingFormat {
	case "", "float", "base64":
	default:
		return InvalidRequest("encoding_format", CodeInvalidValue, "Invalid 'encoding_format': '%s'. Supported values are 'float' and 'base64'.", r.EncodingFormat)
	}
	if r.Dimensions != nil && *r.Dimensions < 1 {
		return InvalidRequest("dimensions", CodeInvalidValue, "Invalid 'dimensions': must be at least 1.")
	}
	return nil
}

// EmbeddingInput is one input of an embeddings request: text, or tokens
// when the client sent token ids.
type EmbeddingInput struct {
	Text   string
	Tokens []int
}

// Inputs decodes input into its items, or returns a 400 *Error.
func (r *EmbeddingRequest) Inputs() ([]EmbeddingInput, error) {
	raw := bytes.TrimSpace(r.Input)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil, MissingParameter("input")
	}
	bad := InvalidRequest("input", CodeInvalidType, "Invalid 'input': expected a string, an array of strings, an array of tokens or an array of token arrays.")
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []EmbeddingInput{{Text: s}}, nil
	}
	var items []json.RawMessage
	if json.Unmarshal(raw, &items) != nil {
		return nil, bad
	}
	if len(items) == 0 {
		return nil, InvalidRequest("input", CodeInvalidValue, "Invalid 'input': empty array.")
	}
	var toks []int
	if json.Unmarshal(raw, &toks) == nil {
		return []EmbeddingInput{{Tokens: toks}}, nil
	}
	out := make([]EmbeddingInput, 0, len(items))
	for i, it := range items {
		var s string
		if json.Unmarshal(it, &s) == nil {
			out = append(out, EmbeddingInput{Text: s})
			continue
		}
		var t []int
		if json.Unmarshal(it, &t) == nil && len(t) > 0 {
			out = append(out, EmbeddingInput{Tokens: t})
			continue
		}
		return nil, InvalidRequest(fmt.Sprintf("input[%d]", i), CodeInvalidType, "Invalid 'input[%d]': expected a string or an array of tokens.", i)
	}
	return out, nil
}

// Thinking returns the client's thinking toggle (chat_template_kwargs
// enable_thinking): nil when unset, so the model's default applies.
func (r *ChatRequest) Thinking() *bool {
	v, ok := r.ChatTemplateKwargs["enable_thinking"]
	if !ok {
		return nil
	}
	switch b := v.(type) {
	case bool:
		return &b
	case string:
		on := strings.EqualFold(b, "true")
		return &on
	}
	return nil
}

// SetThinking sets chat_template_kwargs.enable_thinking, which the neuron
// passes to the chat template (Qwen3, DeepSeek, GLM and other hybrid
// reasoning templates read it).
func (r *ChatRequest) SetThinking(on bool) {
	if r.ChatTemplateKwargs == nil {
		r.ChatTemplateKwargs = map[string]any{}
	}
	r.ChatTemplateKwargs["enable_thinking"] = on
}
