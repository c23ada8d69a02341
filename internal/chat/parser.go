package chat

import (
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// ToolFormat is how a model writes tool calls.
type ToolFormat string

const (
	// ToolFormatHermes: <tool_call>{"name": …, "arguments": {…}}</tool_call>,
	// one block per call (Hermes, Qwen, the built-in ChatML).
	ToolFormatHermes ToolFormat = "hermes"
	// ToolFormatLlama3: the whole answer is {"name": …, "parameters": {…}},
	// possibly after <|python_tag|>; several calls are separated by
	// newlines or semicolons.
	ToolFormatLlama3 ToolFormat = "llama3"
	// ToolFormatMistral: [TOOL_CALLS][{"name": …, "arguments": {…}}, …] or
	// [TOOL_CALLS]name[ARGS]{…}.
	ToolFormatMistral ToolFormat = "mistral"
)

// ParserConfig configures a Parser.
type ParserConfig struct {
	// Format is the tool-call format to recognize.
	Format ToolFormat
	// Tools are the function names the model may call. Empty: nothing is
	// parsed as a call. A call to a name not listed stays content.
	Tools []string
	// MaxCalls bounds the calls recognized (0: no bound); text after the
	// last allowed call is content.
	MaxCalls int
	// InReasoning says the prompt already opened a <think> block, so the
	// output starts as reasoning.
	InReasoning bool
	// NewID makes tool-call ids (nil: "call_" and 24 random characters, or
	// 9 random alphanumerics for Mistral, whose templates insist on them).
	NewID func() string
}

// EventKind says what an Event carries.
type EventKind int

const (
	// EventContent: Text is a content delta.
	EventContent EventKind = iota + 1
	// EventReasoning: Text is a reasoning_content delta.
	EventReasoning
	// EventToolCallStart: a call Index begins, with ID and Name.
	EventToolCallStart
	// EventToolCallArgs: Text is the next fragment of call Index's
	// arguments (compact JSON).
	EventToolCallArgs
	// EventToolCallEnd: call Index is complete.
	EventToolCallEnd
)

// Event is one step of parsed output.
type Event struct {
	Kind EventKind
	// Text is the delta (content, reasoning or an arguments fragment).
	Text string
	// Index numbers tool calls from 0, in order.
	Index int
	// ID and Name are set on EventToolCallStart.
	ID, Name string
}

// Result is the parsed output of a whole generation.
type Result struct {
	Content          string
	ReasoningContent string
	// ToolCalls are the well-formed calls, with compact JSON arguments.
	ToolCalls []openai.ToolCall
}

// FinishReason is the OpenAI finish_reason for a generation that ended
// for reason: "length" when cut by the token limit, "tool_calls" when calls
// were made, else "stop".
func (r Result) FinishReason(reason engine.FinishReason) string {
	switch {
	case reason == engine.FinishLength:
		return openai.FinishLength
	case len(r.ToolCalls) > 0:
		return openai.FinishToolCalls
	default:
		return openai.FinishStop
	}
}

// Message is the assistant message of the result: content is null when
// the model only called tools.
func (r Result) Message() openai.Message {
	m := openai.Message{Role: openai.RoleAssistant, ReasoningContent: r.ReasoningContent, ToolCalls: r.ToolCalls}
	if r.Content != "" || len(r.ToolCalls) == 0 {
		m.Content = openai.TextContent(r.Content)
	}
	return m
}

// Parser splits generated text into content, reasoning and tool calls as
// it streams. It is not safe for concurrent use.
//
// A call is announced (EventToolCallStart) once its name is read and is a
// known tool; if its JSON then turns out malformed, or the output ends
// inside it, the parser ends it (EventToolCallEnd) and gives its raw text
// back as content, and Result leaves it out of ToolCalls. Grammar-forced
// calls cannot be malformed.
type Parser struct {
	st parserState
}

// NewParser returns a parser.
func NewParser(cfg ParserConfig) *Parser {
	p := &Parser{}
	p.st.init(cfg)
	return p
}

// Feed parses the next chunk of text and returns the events it completes.
func (p *Parser) Feed(text string) []Event { return p.st.feed(text) }

// Finish flushes what was held back at the end of the output and returns
// the last events. Feed must not be called after it.
func (p *Parser) Finish() []Event { return p.st.finish() }

// Result is the parsed output so far (complete after Finish).
func (p *Parser) Result() Result { return p.st.result() }
