// Package responses holds the OpenAI Responses API wire types (POST
// /v1/responses requests, response objects, stream events) and their
// translation to and from chat completions, which is all a neuron speaks:
//
//   - ToOpenAIChat turns a Request into a chat request,
//   - FromOpenAIChat turns a chat completion into a Response,
//   - StreamTranslator turns a chat completion chunk stream into the exact
//     Responses event stream (type + sequence_number on every event).
//
// cortex stores nothing: store is always false, previous_response_id,
// conversation, stored prompts and item_reference are clear 400s, and
// clients (Codex sends store:false) resend the whole history in input.
// Hosted tools (web_search, file_search, code_interpreter, computer use,
// image_generation, mcp, local_shell, custom) are dropped with a Warning.
// Errors use the OpenAI envelope (openai.Error).
package responses

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/helexa-ai/cortex/internal/wire"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// Warning is a request feature accepted but not honoured.
type Warning = wire.Warning

// Request is POST /v1/responses.
type Request struct {
	Model string `json:"model"`
	// Input is a string or a list of items.
	Input        Input   `json:"input"`
	Instructions *string `json:"instructions,omitempty"`

	Tools             []Tool      `json:"tools,omitempty"`
	ToolChoice        *ToolChoice `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool       `json:"parallel_tool_calls,omitempty"`
	MaxToolCalls      *int        `json:"max_tool_calls,omitempty"`

	MaxOutputTokens *int     `json:"max_output_tokens,omitempty"`
	Temperature     *float64 `json:"temperature,omitempty"`
	TopP            *float64 `json:"top_p,omitempty"`
	TopLogprobs     *int     `json:"top_logprobs,omitempty"`

	Stream bool `json:"stream,omitempty"`
	// Store is accepted; cortex never stores, and answers store:false.
	Store              *bool           `json:"store,omitempty"`
	PreviousResponseID string          `json:"previous_response_id,omitempty"`
	Conversation       json.RawMessage `json:"conversation,omitempty"`
	Prompt             json.RawMessage `json:"prompt,omitempty"`
	Background         *bool           `json:"background,omitempty"`

	Text      *TextConfig      `json:"text,omitempty"`
	Reasoning *ReasoningConfig `json:"reasoning,omitempty"`
	Include   []string         `json:"include,omitempty"`

	Metadata         map[string]string `json:"metadata,omitempty"`
	Truncation       string            `json:"truncation,omitempty"`
	User             string            `json:"user,omitempty"`
	SafetyIdentifier string            `json:"safety_identifier,omitempty"`
	PromptCacheKey   string            `json:"prompt_cache_key,omitempty"`
	ServiceTier      string            `json:"service_tier,omitempty"`
}

// Input is the request input: a string (one user message) or items.
type Input struct {
	Text  *string
	Items []InputItem
}

// IsNull reports whether input was absent or null.
func (in Input) IsNull() bool { return in.Text == nil && in.Items == nil }

func (in Input) MarshalJSON() ([]byte, error) {
	switch {
	case in.Text != nil:
		return marshal(*in.Text)
	case in.Items != nil:
		return marshal(in.Items)
	}
	return []byte("null"), nil
}

func (in *Input) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*in = Input{}
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*in = Input{Text: &s}
	case len(data) > 0 && data[0] == '[':
		var items []InputItem
		if err := json.Unmarshal(data, &items); err != nil {
			return err
		}
		if items == nil {
			items = []InputItem{}
		}
		*in = Input{Items: items}
	default:
		return errors.New("input must be a string or an array of input items")
	}
	return nil
}

// Input item types cortex reads; others are dropped with a warning.
const (
	ItemMessage            = "message"
	ItemFunctionCall       = "function_call"
	ItemFunctionCallOutput = "function_call_output"
	ItemReasoning          = "reasoning"
	ItemReference          = "item_reference"
)

// InputItem is one item of input. Which fields apply depends on Type ("" is
// a message, the "easy" form). Items of types cortex does not read are kept
// as Raw without decoding their fields, so an unfamiliar shape never fails
// the request.
type InputItem struct {
	Type string `json:"type,omitempty"`
	ID   string `json:"id,omitempty"`

	// message
	Role    string   `json:"role,omitempty"`
	Content *Content `json:"content,omitempty"`
	Status  string   `json:"status,omitempty"`

	// function_call and function_call_output
	CallID    string   `json:"call_id,omitempty"`
	Name      string   `json:"name,omitempty"`
	Arguments string   `json:"arguments,omitempty"`
	Output    *Content `json:"output,omitempty"`

	// reasoning (Content holds its reasoning_text parts)
	Summary          []SummaryText `json:"summary,omitempty"`
	EncryptedContent *string       `json:"encrypted_content,omitempty"`

	// Raw is the whole item when Type is one cortex does not read.
	Raw json.RawMessage `json:"-"`
}

func (it *InputItem) UnmarshalJSON(data []byte) error {
	var probe struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return err
	}
	switch probe.Type {
	case "", ItemMessage, ItemFunctionCall, ItemFunctionCallOutput, ItemReasoning, ItemReference:
		type plain InputItem
		var p plain
		if err := json.Unmarshal(data, &p); err != nil {
			return err
		}
		*it = InputItem(p)
	default:
		*it = InputItem{Type: probe.Type, Raw: append(json.RawMessage(nil), data...)}
	}
	return nil
}

func (it InputItem) MarshalJSON() ([]byte, error) {
	if it.Raw != nil {
		return it.Raw, nil
	}
	type plain InputItem
	return marshal(plain(it))
}

// Content is message content or function_call_output output: a string or a
// list of parts.
type Content struct {
	Text  *string
	Parts []ContentPart
}

func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Text != nil:
		return marshal(*c.Text)
	case c.Parts != nil:
		return marshal(c.Parts)
	}
	return []byte("null"), nil
}

func (c *Content) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*c = Content{}
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*c = Content{Text: &s}
	case len(data) > 0 && data[0] == '[':
		var parts []ContentPart
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		if parts == nil {
			parts = []ContentPart{}
		}
		*c = Content{Parts: parts}
	default:
		return errors.New("must be a string or an array of content parts")
	}
	return nil
}

// Content part types.
const (
	PartInputText     = "input_text"
	PartInputImage    = "input_image"
	PartInputFile     = "input_file"
	PartOutputText    = "output_text"
	PartRefusal       = "refusal"
	PartReasoningText = "reasoning_text"
	PartSummaryText   = "summary_text"
)

// ContentPart is one part of input content (input_text, input_image,
// input_file, output_text, refusal, reasoning_text).
type ContentPart struct {
	Type    string `json:"type"`
	Text    string `json:"text,omitempty"`
	Refusal string `json:"refusal,omitempty"`
	// ImageURL is input_image's image_url: a URL or data: URI. The chat
	// form {"url": …} is accepted too.
	ImageURL ImageURL `json:"image_url,omitempty"`
	FileID   string   `json:"file_id,omitempty"`
	Detail   string   `json:"detail,omitempty"`
	FileData string   `json:"file_data,omitempty"`
	FileURL  string   `json:"file_url,omitempty"`
	Filename string   `json:"filename,omitempty"`
}

// ImageURL is a string that also decodes from {"url": "…"}.
type ImageURL string

func (u *ImageURL) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '{' {
		var obj struct {
			URL string `json:"url"`
		}
		if err := json.Unmarshal(data, &obj); err != nil {
			return err
		}
		*u = ImageURL(obj.URL)
		return nil
	}
	if bytes.Equal(data, []byte("null")) {
		*u = ""
		return nil
	}
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return errors.New("image_url must be a string")
	}
	*u = ImageURL(s)
	return nil
}

// SummaryText is a reasoning summary part.
type SummaryText struct {
	Type string `json:"type"` // summary_text
	Text string `json:"text"`
}

// Tool is one entry of tools. Function tools use the flat Responses shape
// {type, name, description, parameters, strict}; the nested chat shape
// {type, function: {…}} is accepted too. Other types are hosted tools,
// which cortex drops.
type Tool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

func (t *Tool) UnmarshalJSON(data []byte) error {
	var probe struct {
		Type     string          `json:"type"`
		Function json.RawMessage `json:"function"`
		Name     json.RawMessage `json:"name"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return err
	}
	if probe.Type != "function" {
		// A hosted tool: keep its type and, when it is a string, its name.
		*t = Tool{Type: probe.Type}
		_ = json.Unmarshal(probe.Name, &t.Name)
		return nil
	}
	type plain Tool
	var p plain
	if len(probe.Function) > 0 && len(probe.Name) == 0 {
		if err := json.Unmarshal(probe.Function, &p); err != nil {
			return err
		}
	} else if err := json.Unmarshal(data, &p); err != nil {
		return err
	}
	*t = Tool(p)
	t.Type = "function"
	return nil
}

// ToolChoice is tool_choice: "none", "auto", "required", {"type":
// "function", "name": …}, {"type": "allowed_tools", "mode": …, "tools":
// […]}, or a hosted tool type.
type ToolChoice struct {
	// Mode is none, auto or required for a string, else the object's type.
	Mode string
	// Name is the function's name when Mode is function (or custom).
	Name string
	// AllowedMode and Allowed are the allowed_tools mode and function names.
	AllowedMode string
	Allowed     []string
	// Raw is the choice as the client sent it, echoed in the response.
	Raw json.RawMessage
}

func (c ToolChoice) MarshalJSON() ([]byte, error) {
	if c.Raw != nil {
		return c.Raw, nil
	}
	if c.Mode == "function" {
		return marshal(map[string]string{"type": "function", "name": c.Name})
	}
	return marshal(c.Mode)
}

func (c *ToolChoice) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	raw := append(json.RawMessage(nil), data...)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		switch s {
		case "none", "auto", "required":
			*c = ToolChoice{Mode: s, Raw: raw}
			return nil
		}
		return errors.New(`tool_choice must be "none", "auto", "required" or an object`)
	}
	var obj struct {
		Type  string `json:"type"`
		Name  string `json:"name"`
		Mode  string `json:"mode"`
		Tools []struct {
			Type string `json:"type"`
			Name string `json:"name"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return errors.New("tool_choice must be a string or an object with a type")
	}
	if obj.Type == "" {
		return errors.New("tool_choice object needs a type")
	}
	*c = ToolChoice{Mode: obj.Type, Name: obj.Name, AllowedMode: obj.Mode, Raw: raw}
	for _, t := range obj.Tools {
		if t.Type == "function" && t.Name != "" {
			c.Allowed = append(c.Allowed, t.Name)
		}
	}
	return nil
}

// TextConfig is text: the output format and verbosity.
type TextConfig struct {
	Format    *TextFormat `json:"format,omitempty"`
	Verbosity string      `json:"verbosity,omitempty"`
}

// TextFormat is text.format: text, json_object, or json_schema with name,
// schema, strict and description inline.
type TextFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ReasoningConfig is reasoning.
type ReasoningConfig struct {
	// Effort is none, minimal, low, medium, high or xhigh.
	Effort *string `json:"effort,omitempty"`
	// Summary is auto, concise or detailed: asking for one makes cortex
	// stream the model's reasoning as a reasoning summary (see
	// StreamTranslator).
	Summary *string `json:"summary,omitempty"`
	// GenerateSummary is the deprecated name of Summary.
	GenerateSummary *string `json:"generate_summary,omitempty"`
}

// WantsSummary reports whether the client asked for reasoning summaries.
func (r *ReasoningConfig) WantsSummary() bool {
	if r == nil {
		return false
	}
	for _, s := range []*string{r.Summary, r.GenerateSummary} {
		if s != nil && *s != "" && *s != "none" {
			return true
		}
	}
	return false
}

// Response statuses.
const (
	StatusCompleted  = "completed"
	StatusIncomplete = "incomplete"
	StatusFailed     = "failed"
	StatusInProgress = "in_progress"
)

// Response is the response object: the answer to a non-streaming request
// and the "response" of response.created / in_progress / completed /
// incomplete / failed events. It echoes the request's settings as the API
// does.
type Response struct {
	ID                 string             `json:"id"`
	Object             string             `json:"object"` // response
	CreatedAt          int64              `json:"created_at"`
	Status             string             `json:"status"`
	Background         bool               `json:"background"`
	Error              *ResponseError     `json:"error"`
	IncompleteDetails  *IncompleteDetails `json:"incomplete_details"`
	Instructions       *string            `json:"instructions"`
	MaxOutputTokens    *int               `json:"max_output_tokens"`
	MaxToolCalls       *int               `json:"max_tool_calls"`
	Model              string             `json:"model"`
	Output             []OutputItem       `json:"output"`
	ParallelToolCalls  bool               `json:"parallel_tool_calls"`
	PreviousResponseID *string            `json:"previous_response_id"`
	PromptCacheKey     *string            `json:"prompt_cache_key"`
	Reasoning          ReasoningEcho      `json:"reasoning"`
	SafetyIdentifier   *string            `json:"safety_identifier"`
	ServiceTier        string             `json:"service_tier"`
	Store              bool               `json:"store"`
	Temperature        float64            `json:"temperature"`
	Text               TextEcho           `json:"text"`
	ToolChoice         json.RawMessage    `json:"tool_choice"`
	Tools              []FunctionToolEcho `json:"tools"`
	TopLogprobs        int                `json:"top_logprobs"`
	TopP               float64            `json:"top_p"`
	Truncation         string             `json:"truncation"`
	Usage              *Usage             `json:"usage"`
	User               *string            `json:"user"`
	Metadata           map[string]string  `json:"metadata"`
}

// ResponseError is the error of a failed response.
type ResponseError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// IncompleteDetails says why a response is incomplete: max_output_tokens
// or content_filter.
type IncompleteDetails struct {
	Reason string `json:"reason"`
}

// ReasoningEcho is the response's reasoning settings.
type ReasoningEcho struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// TextEcho is the response's text settings.
type TextEcho struct {
	Format    TextFormat `json:"format"`
	Verbosity string     `json:"verbosity"`
}

// FunctionToolEcho is a function tool as responses list it.
type FunctionToolEcho struct {
	Type        string          `json:"type"` // function
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      bool            `json:"strict"`
}

// Output item types.
const (
	OutputMessage      = "message"
	OutputFunctionCall = "function_call"
	OutputReasoning    = "reasoning"
)

// OutputItem is one item of a response's output: a message, a function
// call or reasoning. It marshals the fields of its type only.
type OutputItem struct {
	Type   string
	ID     string
	Status string

	// message: output_text and refusal parts.
	Content []OutputContent

	// function_call
	CallID    string
	Name      string
	Arguments string

	// reasoning: summary parts, or the raw reasoning as Content
	// (reasoning_text parts; nil when the reasoning is summarised).
	Summary []SummaryText
}

func (it OutputItem) MarshalJSON() ([]byte, error) {
	switch it.Type {
	case OutputMessage:
		content := it.Content
		if content == nil {
			content = []OutputContent{}
		}
		return marshal(struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Status  string          `json:"status"`
			Content []OutputContent `json:"content"`
			Role    string          `json:"role"`
		}{it.ID, it.Type, it.Status, content, "assistant"})
	case OutputFunctionCall:
		return marshal(struct {
			ID        string `json:"id"`
			Type      string `json:"type"`
			Status    string `json:"status"`
			Arguments string `json:"arguments"`
			CallID    string `json:"call_id"`
			Name      string `json:"name"`
		}{it.ID, it.Type, it.Status, it.Arguments, it.CallID, it.Name})
	case OutputReasoning:
		summary := it.Summary
		if summary == nil {
			summary = []SummaryText{}
		}
		return marshal(struct {
			ID      string          `json:"id"`
			Type    string          `json:"type"`
			Summary []SummaryText   `json:"summary"`
			Content []OutputContent `json:"content,omitempty"`
		}{it.ID, it.Type, summary, it.Content})
	}
	return nil, errors.New("unknown output item type " + it.Type)
}

func (it *OutputItem) UnmarshalJSON(data []byte) error {
	var aux struct {
		Type      string          `json:"type"`
		ID        string          `json:"id"`
		Status    string          `json:"status"`
		Content   []OutputContent `json:"content"`
		CallID    string          `json:"call_id"`
		Name      string          `json:"name"`
		Arguments string          `json:"arguments"`
		Summary   []SummaryText   `json:"summary"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	*it = OutputItem(aux)
	return nil
}

// OutputContent is a part of an output message (output_text, refusal) or
// of raw reasoning (reasoning_text).
type OutputContent struct {
	Type    string
	Text    string
	Refusal string
}

func (c OutputContent) MarshalJSON() ([]byte, error) {
	switch c.Type {
	case PartOutputText:
		return marshal(struct {
			Type        string `json:"type"`
			Annotations []any  `json:"annotations"`
			Logprobs    []any  `json:"logprobs"`
			Text        string `json:"text"`
		}{c.Type, []any{}, []any{}, c.Text})
	case PartRefusal:
		return marshal(struct {
			Type    string `json:"type"`
			Refusal string `json:"refusal"`
		}{c.Type, c.Refusal})
	default:
		return marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{c.Type, c.Text})
	}
}

func (c *OutputContent) UnmarshalJSON(data []byte) error {
	var aux struct {
		Type    string `json:"type"`
		Text    string `json:"text"`
		Refusal string `json:"refusal"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	*c = OutputContent(aux)
	return nil
}

// Usage counts tokens.
type Usage struct {
	InputTokens         int                 `json:"input_tokens"`
	InputTokensDetails  InputTokensDetails  `json:"input_tokens_details"`
	OutputTokens        int                 `json:"output_tokens"`
	OutputTokensDetails OutputTokensDetails `json:"output_tokens_details"`
	TotalTokens         int                 `json:"total_tokens"`
}

// InputTokensDetails breaks down input tokens.
type InputTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
}

// OutputTokensDetails breaks down output tokens.
type OutputTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// marshal encodes like the API: <, > and & stay as they are.
func marshal(v any) ([]byte, error) { return sse.Marshal(v) }
