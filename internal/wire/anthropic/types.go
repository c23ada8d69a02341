// Package anthropic holds the Anthropic Messages API wire types (requests,
// responses, stream events, count_tokens, errors) and their translation to
// and from OpenAI chat completions, which is all a neuron speaks:
//
//   - ToOpenAIChat turns a MessagesRequest into a chat request,
//   - FromOpenAIChat turns a chat completion into a MessagesResponse,
//   - StreamTranslator turns a chat completion chunk stream into the exact
//     Anthropic event stream,
//   - ErrorFromOpenAI / ToOpenAIError map error envelopes both ways.
//
// Decoding is lenient where Anthropic is and where clients send fields
// cortex has no use for (cache_control anywhere, context_management,
// container, mcp_servers, service_tier, unknown fields): they are ignored.
// Server-side tools are dropped with a Warning instead of failing the
// request.
package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"

	"github.com/helexa-ai/cortex/internal/wire"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// Warning is a request feature accepted but not honoured.
type Warning = wire.Warning

// MessagesRequest is POST /v1/messages (and, without max_tokens, POST
// /v1/messages/count_tokens).
type MessagesRequest struct {
	Model    string         `json:"model"`
	Messages []MessageParam `json:"messages"`
	// System is a string or a list of text blocks.
	System        *Content `json:"system,omitempty"`
	MaxTokens     int      `json:"max_tokens,omitempty"`
	StopSequences []string `json:"stop_sequences,omitempty"`
	Temperature   *float64 `json:"temperature,omitempty"`
	TopP          *float64 `json:"top_p,omitempty"`
	TopK          *int     `json:"top_k,omitempty"`
	Stream        bool     `json:"stream,omitempty"`

	Tools      []Tool          `json:"tools,omitempty"`
	ToolChoice *ToolChoice     `json:"tool_choice,omitempty"`
	Thinking   *ThinkingConfig `json:"thinking,omitempty"`

	// Metadata is {"user_id": …}; kept raw so an odd shape never fails a
	// request.
	Metadata json.RawMessage `json:"metadata,omitempty"`
	// OutputConfig is {"effort": …, "format": {"type": "json_schema",
	// "schema": …}}. Its format becomes response_format and its effort
	// reasoning_effort; anything else in it is ignored.
	OutputConfig json.RawMessage `json:"output_config,omitempty"`
	// ServiceTier is accepted and ignored.
	ServiceTier json.RawMessage `json:"service_tier,omitempty"`
}

// CountTokensRequest is POST /v1/messages/count_tokens: a MessagesRequest
// without max_tokens.
type CountTokensRequest = MessagesRequest

// CountTokensResponse answers count_tokens.
type CountTokensResponse struct {
	InputTokens int `json:"input_tokens"`
}

// Roles.
const (
	RoleUser      = "user"
	RoleAssistant = "assistant"
	RoleSystem    = "system"
)

// MessageParam is one message of a request.
type MessageParam struct {
	Role    string  `json:"role"`
	Content Content `json:"content"`
}

// Content is a string or a list of content blocks (message content, system,
// tool_result content).
type Content struct {
	// Text is set when the content was a string.
	Text *string
	// Blocks is set when the content was a list.
	Blocks []ContentBlock
}

// IsNull reports whether the content was absent or null.
func (c Content) IsNull() bool { return c.Text == nil && c.Blocks == nil }

// AsBlocks returns the content as blocks: a string becomes one text block.
func (c Content) AsBlocks() []ContentBlock {
	if c.Text != nil {
		return []ContentBlock{{Type: BlockText, Text: *c.Text}}
	}
	return c.Blocks
}

func (c Content) MarshalJSON() ([]byte, error) {
	switch {
	case c.Text != nil:
		return marshal(*c.Text)
	case c.Blocks != nil:
		return marshal(c.Blocks)
	default:
		return []byte("null"), nil
	}
}

func (c *Content) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case bytes.Equal(data, []byte("null")):
		*c = Content{}
		return nil
	case len(data) > 0 && data[0] == '"':
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*c = Content{Text: &s}
		return nil
	case len(data) > 0 && data[0] == '[':
		var blocks []ContentBlock
		if err := json.Unmarshal(data, &blocks); err != nil {
			return err
		}
		if blocks == nil {
			blocks = []ContentBlock{}
		}
		*c = Content{Blocks: blocks}
		return nil
	default:
		return errors.New("content must be a string or an array of content blocks")
	}
}

// Content block types.
const (
	BlockText             = "text"
	BlockImage            = "image"
	BlockDocument         = "document"
	BlockSearchResult     = "search_result"
	BlockToolUse          = "tool_use"
	BlockToolResult       = "tool_result"
	BlockThinking         = "thinking"
	BlockRedactedThinking = "redacted_thinking"
	BlockServerToolUse    = "server_tool_use"
)

// ContentBlock is one content block, of any type; which fields apply
// depends on Type. It marshals only the fields of its type, each always
// present where the API always sends it (text "", tool_use input {}).
type ContentBlock struct {
	Type string `json:"type"`

	// text, and search_result / document titles and text.
	Text string `json:"text,omitempty"`

	// image and document.
	Source  *Source `json:"source,omitempty"`
	Title   string  `json:"title,omitempty"`
	Context string  `json:"context,omitempty"`

	// tool_use and server_tool_use.
	ID    string          `json:"id,omitempty"`
	Name  string          `json:"name,omitempty"`
	Input json.RawMessage `json:"input,omitempty"`

	// tool_result; search_result content is a list of text blocks.
	ToolUseID string   `json:"tool_use_id,omitempty"`
	Content   *Content `json:"content,omitempty"`
	IsError   bool     `json:"is_error,omitempty"`

	// search_result.
	SourceURL string `json:"-"`

	// thinking.
	Thinking  string `json:"thinking,omitempty"`
	Signature string `json:"signature,omitempty"`

	// redacted_thinking.
	Data string `json:"data,omitempty"`
}

// searchResultSource lets search_result's "source" (a string) and image or
// document "source" (an object) share the Source field.
func (b *ContentBlock) UnmarshalJSON(data []byte) error {
	type plain ContentBlock
	var aux struct {
		plain
		Source json.RawMessage `json:"source"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	*b = ContentBlock(aux.plain)
	src := bytes.TrimSpace(aux.Source)
	switch {
	case len(src) == 0 || bytes.Equal(src, []byte("null")):
	case src[0] == '"':
		return json.Unmarshal(src, &b.SourceURL)
	default:
		var s Source
		if err := json.Unmarshal(src, &s); err != nil {
			return err
		}
		b.Source = &s
	}
	return nil
}

func (b ContentBlock) MarshalJSON() ([]byte, error) {
	switch b.Type {
	case BlockText:
		return marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{b.Type, b.Text})
	case BlockThinking:
		return marshal(struct {
			Type      string `json:"type"`
			Thinking  string `json:"thinking"`
			Signature string `json:"signature"`
		}{b.Type, b.Thinking, b.Signature})
	case BlockRedactedThinking:
		return marshal(struct {
			Type string `json:"type"`
			Data string `json:"data"`
		}{b.Type, b.Data})
	case BlockToolUse, BlockServerToolUse:
		in := b.Input
		if len(bytes.TrimSpace(in)) == 0 {
			in = json.RawMessage("{}")
		}
		return marshal(struct {
			Type  string          `json:"type"`
			ID    string          `json:"id"`
			Name  string          `json:"name"`
			Input json.RawMessage `json:"input"`
		}{b.Type, b.ID, b.Name, in})
	case BlockToolResult:
		return marshal(struct {
			Type      string   `json:"type"`
			ToolUseID string   `json:"tool_use_id"`
			Content   *Content `json:"content,omitempty"`
			IsError   bool     `json:"is_error,omitempty"`
		}{b.Type, b.ToolUseID, b.Content, b.IsError})
	case BlockSearchResult:
		return marshal(struct {
			Type    string   `json:"type"`
			Source  string   `json:"source"`
			Title   string   `json:"title"`
			Content *Content `json:"content"`
		}{b.Type, b.SourceURL, b.Title, b.Content})
	default:
		type plain ContentBlock
		return marshal(plain(b))
	}
}

// Source is an image or document source.
type Source struct {
	// Type is base64, url, text, content or file.
	Type      string `json:"type"`
	MediaType string `json:"media_type,omitempty"`
	Data      string `json:"data,omitempty"`
	URL       string `json:"url,omitempty"`
	FileID    string `json:"file_id,omitempty"`
	// Content is the block list of a "content" document source.
	Content *Content `json:"content,omitempty"`
}

// Tool is one entry of tools: a custom tool (type absent or "custom") with
// an input_schema, or a server tool (web_search_…, bash_…, text_editor_…,
// …), which cortex drops with a Warning.
type Tool struct {
	Type        string          `json:"type,omitempty"`
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	InputSchema json.RawMessage `json:"input_schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// IsCustom reports whether t is a custom (client-executed) tool.
func (t Tool) IsCustom() bool { return t.Type == "" || t.Type == "custom" }

// ToolChoice is tool_choice.
type ToolChoice struct {
	// Type is auto, any, tool or none.
	Type string `json:"type"`
	// Name is the tool to use when Type is tool.
	Name                   string `json:"name,omitempty"`
	DisableParallelToolUse *bool  `json:"disable_parallel_tool_use,omitempty"`
}

// ThinkingConfig is thinking.
type ThinkingConfig struct {
	// Type is enabled, disabled or adaptive.
	Type         string `json:"type"`
	BudgetTokens int    `json:"budget_tokens,omitempty"`
	// Display (summarized / omitted) is accepted and ignored: cortex
	// returns the model's thinking as it is.
	Display string `json:"display,omitempty"`
}

// Stop reasons.
const (
	StopEndTurn      = "end_turn"
	StopMaxTokens    = "max_tokens"
	StopStopSequence = "stop_sequence"
	StopToolUse      = "tool_use"
	StopPauseTurn    = "pause_turn"
	StopRefusal      = "refusal"
)

// MessagesResponse is a message: the answer to a non-streaming request and
// the "message" of message_start.
type MessagesResponse struct {
	ID      string         `json:"id"`
	Type    string         `json:"type"` // message
	Role    string         `json:"role"` // assistant
	Model   string         `json:"model"`
	Content []ContentBlock `json:"content"`
	// StopReason is null only in message_start.
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
	Usage        Usage   `json:"usage"`
}

// Usage counts tokens. cortex has no prompt cache accounting, so the cache
// fields are always 0 (and present, as the API sends them).
type Usage struct {
	InputTokens              int `json:"input_tokens"`
	CacheCreationInputTokens int `json:"cache_creation_input_tokens"`
	CacheReadInputTokens     int `json:"cache_read_input_tokens"`
	OutputTokens             int `json:"output_tokens"`
}

// StreamEvent is one event of a Messages stream; EventType is both the SSE
// event name and the data's "type".
type StreamEvent interface {
	EventType() string
}

// MessageStartEvent opens a stream.
type MessageStartEvent struct {
	Type    string           `json:"type"`
	Message MessagesResponse `json:"message"`
}

// ContentBlockStartEvent opens content block Index.
type ContentBlockStartEvent struct {
	Type         string       `json:"type"`
	Index        int          `json:"index"`
	ContentBlock ContentBlock `json:"content_block"`
}

// ContentBlockDeltaEvent adds to content block Index.
type ContentBlockDeltaEvent struct {
	Type  string     `json:"type"`
	Index int        `json:"index"`
	Delta BlockDelta `json:"delta"`
}

// Block delta types.
const (
	DeltaText      = "text_delta"
	DeltaInputJSON = "input_json_delta"
	DeltaThinking  = "thinking_delta"
	DeltaSignature = "signature_delta"
)

// BlockDelta is a content block delta; the field that applies depends on
// Type and is always present.
type BlockDelta struct {
	Type        string
	Text        string
	PartialJSON string
	Thinking    string
	Signature   string
}

func (d BlockDelta) MarshalJSON() ([]byte, error) {
	switch d.Type {
	case DeltaText:
		return marshal(struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}{d.Type, d.Text})
	case DeltaInputJSON:
		return marshal(struct {
			Type        string `json:"type"`
			PartialJSON string `json:"partial_json"`
		}{d.Type, d.PartialJSON})
	case DeltaThinking:
		return marshal(struct {
			Type     string `json:"type"`
			Thinking string `json:"thinking"`
		}{d.Type, d.Thinking})
	case DeltaSignature:
		return marshal(struct {
			Type      string `json:"type"`
			Signature string `json:"signature"`
		}{d.Type, d.Signature})
	}
	return nil, errors.New("unknown block delta type " + d.Type)
}

func (d *BlockDelta) UnmarshalJSON(data []byte) error {
	var aux struct {
		Type        string `json:"type"`
		Text        string `json:"text"`
		PartialJSON string `json:"partial_json"`
		Thinking    string `json:"thinking"`
		Signature   string `json:"signature"`
	}
	if err := json.Unmarshal(data, &aux); err != nil {
		return err
	}
	*d = BlockDelta(aux)
	return nil
}

// ContentBlockStopEvent closes content block Index.
type ContentBlockStopEvent struct {
	Type  string `json:"type"`
	Index int    `json:"index"`
}

// MessageDeltaEvent carries the stop reason and final usage.
type MessageDeltaEvent struct {
	Type  string       `json:"type"`
	Delta MessageDelta `json:"delta"`
	Usage Usage        `json:"usage"`
}

// MessageDelta is the delta of message_delta.
type MessageDelta struct {
	StopReason   *string `json:"stop_reason"`
	StopSequence *string `json:"stop_sequence"`
}

// MessageStopEvent ends a stream.
type MessageStopEvent struct {
	Type string `json:"type"`
}

// PingEvent is a keep-alive the SDKs skip; valid after message_start.
type PingEvent struct {
	Type string `json:"type"`
}

// Ping returns a ping event.
func Ping() PingEvent { return PingEvent{Type: "ping"} }

func (MessageStartEvent) EventType() string      { return "message_start" }
func (ContentBlockStartEvent) EventType() string { return "content_block_start" }
func (ContentBlockDeltaEvent) EventType() string { return "content_block_delta" }
func (ContentBlockStopEvent) EventType() string  { return "content_block_stop" }
func (MessageDeltaEvent) EventType() string      { return "message_delta" }
func (MessageStopEvent) EventType() string       { return "message_stop" }
func (PingEvent) EventType() string              { return "ping" }
func (ErrorResponse) EventType() string          { return "error" }

// marshal encodes like the API: <, > and & stay as they are.
func marshal(v any) ([]byte, error) { return sse.Marshal(v) }
