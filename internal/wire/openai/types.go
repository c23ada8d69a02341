// Package openai holds the OpenAI API wire types cortex speaks: chat
// completions, completions, embeddings, models and the error envelope. The
// neuron serves them and the gateway routes and translates them; the
// Responses API lives in package responses, the Anthropic dialect in package
// anthropic.
package openai

import (
	"bytes"
	"encoding/json"
	"errors"
)

// ChatRequest is POST /v1/chat/completions.
type ChatRequest struct {
	Model    string    `json:"model"`
	Messages []Message `json:"messages"`

	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`

	MaxTokens           *int     `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int     `json:"max_completion_tokens,omitempty"`
	Temperature         *float32 `json:"temperature,omitempty"`
	TopP                *float32 `json:"top_p,omitempty"`
	// TopK and MinP are llama.cpp extensions many clients send.
	TopK             *int         `json:"top_k,omitempty"`
	MinP             *float32     `json:"min_p,omitempty"`
	Seed             *int64       `json:"seed,omitempty"`
	PresencePenalty  *float32     `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float32     `json:"frequency_penalty,omitempty"`
	RepeatPenalty    *float32     `json:"repeat_penalty,omitempty"`
	Stop             StringOrList `json:"stop,omitempty"`
	N                *int         `json:"n,omitempty"`

	Logprobs    bool `json:"logprobs,omitempty"`
	TopLogprobs *int `json:"top_logprobs,omitempty"`

	Tools             []Tool          `json:"tools,omitempty"`
	ToolChoice        *ToolChoice     `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool           `json:"parallel_tool_calls,omitempty"`
	ResponseFormat    *ResponseFormat `json:"response_format,omitempty"`

	// ReasoningEffort is accepted for compatibility; small local models
	// ignore it.
	ReasoningEffort string          `json:"reasoning_effort,omitempty"`
	User            string          `json:"user,omitempty"`
	Metadata        json.RawMessage `json:"metadata,omitempty"`
	Store           *bool           `json:"store,omitempty"`

	// ChatTemplateKwargs are extra variables for the model's chat template
	// (the vLLM / llama.cpp server convention). The gateway sets
	// "enable_thinking" here when a client asked for thinking on or off
	// (see SetThinking); the neuron passes the map to the template.
	ChatTemplateKwargs map[string]any `json:"chat_template_kwargs,omitempty"`
	// ThinkingBudgetTokens is a cortex extension: the most tokens the model
	// should spend thinking before it answers (Anthropic
	// thinking.budget_tokens). A neuron that cannot bound thinking ignores
	// it.
	ThinkingBudgetTokens *int `json:"thinking_budget_tokens,omitempty"`
}

// StreamOptions is stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage,omitempty"`
}

// Message is one chat message. Content is a string or a list of parts.
type Message struct {
	Role    string         `json:"role"`
	Content MessageContent `json:"content"`
	Name    string         `json:"name,omitempty"`
	// ReasoningContent carries a model's thinking (DeepSeek/llama.cpp
	// convention), in requests (history) and responses.
	ReasoningContent string     `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	ToolCallID       string     `json:"tool_call_id,omitempty"`
	Refusal          *string    `json:"refusal,omitempty"`
}

// MessageContent is a message's content: a plain string, a list of parts,
// or null.
type MessageContent struct {
	// Text is set when the content was a plain string.
	Text *string
	// Parts is set when the content was a list.
	Parts []ContentPart
}

// TextContent returns a MessageContent holding s.
func TextContent(s string) MessageContent { return MessageContent{Text: &s} }

// String concatenates the text of the content.
func (c MessageContent) String() string {
	if c.Text != nil {
		return *c.Text
	}
	var b bytes.Buffer
	for _, p := range c.Parts {
		if p.Type == "text" || p.Type == "input_text" || p.Type == "output_text" {
			b.WriteString(p.Text)
		}
	}
	return b.String()
}

// IsNull reports whether the content was absent or null.
func (c MessageContent) IsNull() bool { return c.Text == nil && c.Parts == nil }

func (c MessageContent) MarshalJSON() ([]byte, error) {
	switch {
	case c.Text != nil:
		return json.Marshal(*c.Text)
	case c.Parts != nil:
		return json.Marshal(c.Parts)
	default:
		return []byte("null"), nil
	}
}

func (c *MessageContent) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*c = MessageContent{}
		return nil
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*c = MessageContent{Text: &s}
		return nil
	case len(data) > 0 && data[0] == '[':
		var parts []ContentPart
		if err := json.Unmarshal(data, &parts); err != nil {
			return err
		}
		if parts == nil {
			parts = []ContentPart{}
		}
		*c = MessageContent{Parts: parts}
		return nil
	default:
		return errors.New("content must be a string, an array of content parts, or null")
	}
}

// ContentPart is one part of a multi-part message.
type ContentPart struct {
	Type     string    `json:"type"` // text | image_url | input_audio | file
	Text     string    `json:"text,omitempty"`
	ImageURL *ImageURL `json:"image_url,omitempty"`
}

// ImageURL is an image reference (https URL or data: URI).
type ImageURL struct {
	URL    string `json:"url"`
	Detail string `json:"detail,omitempty"`
}

// Tool is a tool the model may call.
type Tool struct {
	Type     string       `json:"type"` // function
	Function FunctionDecl `json:"function"`
}

// FunctionDecl declares a function tool.
type FunctionDecl struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Parameters  json.RawMessage `json:"parameters,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolChoice is "none" | "auto" | "required" or a named function.
type ToolChoice struct {
	// Mode is none, auto or required when the choice was a string, or
	// "function" when it named a function.
	Mode     string
	Function string
}

func (t ToolChoice) MarshalJSON() ([]byte, error) {
	if t.Mode == "function" {
		return json.Marshal(map[string]any{"type": "function", "function": map[string]string{"name": t.Function}})
	}
	return json.Marshal(t.Mode)
}

func (t *ToolChoice) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		switch s {
		case "none", "auto", "required":
			*t = ToolChoice{Mode: s}
			return nil
		}
		return errors.New(`tool_choice must be "none", "auto", "required" or {"type":"function","function":{"name":…}}`)
	}
	var obj struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(data, &obj); err != nil {
		return err
	}
	if obj.Type != "function" || obj.Function.Name == "" {
		return errors.New(`tool_choice object must be {"type":"function","function":{"name":…}}`)
	}
	*t = ToolChoice{Mode: "function", Function: obj.Function.Name}
	return nil
}

// ResponseFormat is response_format.
type ResponseFormat struct {
	Type       string      `json:"type"` // text | json_object | json_schema
	JSONSchema *JSONSchema `json:"json_schema,omitempty"`
}

// JSONSchema is response_format.json_schema.
type JSONSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// ToolCall is a call the model made.
type ToolCall struct {
	// Index is set in streaming deltas only.
	Index    *int         `json:"index,omitempty"`
	ID       string       `json:"id,omitempty"`
	Type     string       `json:"type,omitempty"` // function
	Function FunctionCall `json:"function"`
}

// FunctionCall is the function part of a tool call. Arguments is a JSON
// document encoded as a string, as OpenAI sends it.
type FunctionCall struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// StringOrList is a field that may be a string or a list of strings.
type StringOrList []string

func (s *StringOrList) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if bytes.Equal(data, []byte("null")) {
		*s = nil
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var one string
		if err := json.Unmarshal(data, &one); err != nil {
			return err
		}
		*s = StringOrList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(data, &many); err != nil {
		return errors.New("must be a string or an array of strings")
	}
	*s = many
	return nil
}

// ChatResponse is a non-streaming chat completion.
type ChatResponse struct {
	ID                string       `json:"id"`
	Object            string       `json:"object"` // chat.completion
	Created           int64        `json:"created"`
	Model             string       `json:"model"`
	SystemFingerprint string       `json:"system_fingerprint,omitempty"`
	Choices           []ChatChoice `json:"choices"`
	Usage             *Usage       `json:"usage,omitempty"`
}

// ChatChoice is one choice of a chat completion.
type ChatChoice struct {
	Index        int       `json:"index"`
	Message      Message   `json:"message"`
	FinishReason string    `json:"finish_reason"` // stop | length | tool_calls | content_filter
	Logprobs     *Logprobs `json:"logprobs,omitempty"`
	// StopSequence is a cortex extension: the request's stop string that
	// ended generation, set only when finish_reason is "stop" because of a
	// stop string (not an end-of-generation token). The Anthropic dialect
	// needs it for stop_reason "stop_sequence".
	StopSequence *string `json:"stop_sequence,omitempty"`
}

// ChatChunk is one streamed chat.completion.chunk.
type ChatChunk struct {
	ID                string        `json:"id"`
	Object            string        `json:"object"` // chat.completion.chunk
	Created           int64         `json:"created"`
	Model             string        `json:"model"`
	SystemFingerprint string        `json:"system_fingerprint,omitempty"`
	Choices           []ChunkChoice `json:"choices"`
	// Usage is set on the final chunk when stream_options.include_usage.
	Usage *Usage `json:"usage,omitempty"`
}

// ChunkChoice is one choice of a chunk.
type ChunkChoice struct {
	Index        int       `json:"index"`
	Delta        Delta     `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
	Logprobs     *Logprobs `json:"logprobs,omitempty"`
	// StopSequence is the cortex extension of ChatChoice.StopSequence, sent
	// on the chunk that carries finish_reason.
	StopSequence *string `json:"stop_sequence,omitempty"`
}

// Delta is the incremental message of a chunk.
type Delta struct {
	Role             string     `json:"role,omitempty"`
	Content          *string    `json:"content,omitempty"`
	ReasoningContent *string    `json:"reasoning_content,omitempty"`
	ToolCalls        []ToolCall `json:"tool_calls,omitempty"`
	Refusal          *string    `json:"refusal,omitempty"`
}

// Logprobs is a choice's logprobs.
type Logprobs struct {
	Content []TokenLogprob `json:"content"`
}

// TokenLogprob is one token's logprob with alternatives.
type TokenLogprob struct {
	Token       string       `json:"token"`
	Logprob     float32      `json:"logprob"`
	Bytes       []int        `json:"bytes"`
	TopLogprobs []TopLogprob `json:"top_logprobs"`
}

// TopLogprob is one alternative.
type TopLogprob struct {
	Token   string  `json:"token"`
	Logprob float32 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// Usage counts tokens.
type Usage struct {
	PromptTokens            int                      `json:"prompt_tokens"`
	CompletionTokens        int                      `json:"completion_tokens"`
	TotalTokens             int                      `json:"total_tokens"`
	PromptTokensDetails     *PromptTokensDetails     `json:"prompt_tokens_details,omitempty"`
	CompletionTokensDetails *CompletionTokensDetails `json:"completion_tokens_details,omitempty"`
}

// PromptTokensDetails breaks down prompt tokens.
type PromptTokensDetails struct {
	CachedTokens int `json:"cached_tokens"`
	// ImageTokens are the prompt positions images took (vision models).
	ImageTokens int `json:"image_tokens,omitempty"`
}

// CompletionTokensDetails breaks down completion tokens.
type CompletionTokensDetails struct {
	ReasoningTokens int `json:"reasoning_tokens"`
}

// CompletionRequest is POST /v1/completions (legacy text completion).
type CompletionRequest struct {
	Model            string         `json:"model"`
	Prompt           StringOrList   `json:"prompt"`
	Suffix           string         `json:"suffix,omitempty"`
	Stream           bool           `json:"stream,omitempty"`
	StreamOptions    *StreamOptions `json:"stream_options,omitempty"`
	MaxTokens        *int           `json:"max_tokens,omitempty"`
	Temperature      *float32       `json:"temperature,omitempty"`
	TopP             *float32       `json:"top_p,omitempty"`
	TopK             *int           `json:"top_k,omitempty"`
	MinP             *float32       `json:"min_p,omitempty"`
	Seed             *int64         `json:"seed,omitempty"`
	PresencePenalty  *float32       `json:"presence_penalty,omitempty"`
	FrequencyPenalty *float32       `json:"frequency_penalty,omitempty"`
	RepeatPenalty    *float32       `json:"repeat_penalty,omitempty"`
	Stop             StringOrList   `json:"stop,omitempty"`
	N                *int           `json:"n,omitempty"`
	Echo             bool           `json:"echo,omitempty"`
	Logprobs         *int           `json:"logprobs,omitempty"`
	User             string         `json:"user,omitempty"`
}

// CompletionResponse is a text completion (also each streamed chunk, with
// object text_completion).
type CompletionResponse struct {
	ID      string             `json:"id"`
	Object  string             `json:"object"` // text_completion
	Created int64              `json:"created"`
	Model   string             `json:"model"`
	Choices []CompletionChoice `json:"choices"`
	Usage   *Usage             `json:"usage,omitempty"`
}

// CompletionChoice is one text completion choice.
type CompletionChoice struct {
	Index        int     `json:"index"`
	Text         string  `json:"text"`
	FinishReason *string `json:"finish_reason"`
	Logprobs     any     `json:"logprobs"`
}

// EmbeddingRequest is POST /v1/embeddings. Input is a string, a list of
// strings, a list of tokens or a list of token lists.
type EmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format,omitempty"` // float | base64
	Dimensions     *int            `json:"dimensions,omitempty"`
	User           string          `json:"user,omitempty"`
}

// EmbeddingResponse is the answer to an embeddings request.
type EmbeddingResponse struct {
	Object string         `json:"object"` // list
	Data   []Embedding    `json:"data"`
	Model  string         `json:"model"`
	Usage  EmbeddingUsage `json:"usage"`
}

// Embedding is one embedding; Embedding is []float32 or a base64 string.
type Embedding struct {
	Object    string `json:"object"` // embedding
	Index     int    `json:"index"`
	Embedding any    `json:"embedding"`
}

// EmbeddingUsage counts tokens of an embeddings request.
type EmbeddingUsage struct {
	PromptTokens int `json:"prompt_tokens"`
	TotalTokens  int `json:"total_tokens"`
}

// ModelObject is one entry of GET /v1/models. The cortex extension fields
// say where the model is and could be.
type ModelObject struct {
	ID      string `json:"id"`
	Object  string `json:"object"` // model
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Cortex extensions.
	Cortex *ModelPlacement `json:"cortex,omitempty"`
}

// ModelPlacement is the cortex extension of a model entry.
type ModelPlacement struct {
	// Model is the Model key, "<namespace>/<name>".
	Model string `json:"model"`
	// Aliases are the other served names.
	Aliases []string `json:"aliases,omitempty"`
	// Canonical is the first served name.
	Canonical string `json:"canonical"`
	Loaded    bool   `json:"loaded"`
	Phase     string `json:"phase,omitempty"`
	// Nodes hold ready replicas.
	Nodes []string `json:"nodes,omitempty"`
	// Placeable lists nodes that could take a replica now.
	Placeable []string `json:"placeable,omitempty"`
	// ContextLength is the context per request, when known.
	ContextLength int `json:"context_length,omitempty"`
	// Vision reports that the model reads images (its source has a
	// vision projector).
	Vision bool `json:"vision,omitempty"`
}

// ModelList is GET /v1/models.
type ModelList struct {
	Object string        `json:"object"` // list
	Data   []ModelObject `json:"data"`
}

// ErrorBody is the OpenAI error envelope.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail is the inside of the OpenAI error envelope.
type ErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// Finish reasons.
const (
	FinishStop      = "stop"
	FinishLength    = "length"
	FinishToolCalls = "tool_calls"
)
