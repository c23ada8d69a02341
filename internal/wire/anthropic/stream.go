package anthropic

import (
	"fmt"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/internal/toolcalls"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

type blockKind int

const (
	noBlock blockKind = iota
	textBlock
	thinkingBlock
	toolBlock
)

// StreamTranslator turns an OpenAI chat completion chunk stream into the
// Anthropic Messages event stream, exactly as the API sends it:
//
//	message_start (usage.input_tokens)
//	[thinking block: content_block_start, thinking_delta…, signature_delta, content_block_stop]
//	[text block: content_block_start, text_delta…, content_block_stop]
//	[tool_use block per tool call: content_block_start {id, name, input {}}, input_json_delta…, content_block_stop]
//	message_delta (stop_reason, stop_sequence, usage.output_tokens)
//	message_stop
//
// Blocks open in the order the model produces their content and get
// indices 0, 1, 2…; a block closes before the next opens, so content after
// a tool call starts a new text block. Tool call arguments stream as
// input_json_delta pieces as they arrive; arguments that do not start as a
// JSON object are held and sent once, wrapped by ToolInput. Only choice 0
// is read.
//
// Feed it with Start (optional: the gateway may call it early, before the
// neuron answers, so the client sees the message begin and pings are legal),
// Chunk for every chunk, then Finish when the upstream stream ended
// normally ([DONE]) or Fail when it failed. Each returns the events to
// write, in order (see WriteEvents). After Finish or Fail every call
// returns nothing. It is not safe for concurrent use.
type StreamTranslator struct {
	model, id   string
	inputTokens int

	started, done bool
	nextIndex     int
	open          blockKind
	openIndex     int
	thinking      strings.Builder

	calls *toolcalls.Sequencer
	// evs collects the events the sequencer's callbacks render.
	evs []StreamEvent

	anyBlock     bool
	finish       string
	stopSequence *string
	usage        *openai.Usage
	deltaChunks  int
}

// NewStreamTranslator returns a translator for a message with id messageID
// (see MessageID) answering model, whose prompt has inputTokens tokens (as
// counted before the request; the upstream usage chunk, when it comes,
// corrects it in message_delta).
func NewStreamTranslator(model, messageID string, inputTokens int) *StreamTranslator {
	return &StreamTranslator{model: model, id: messageID, inputTokens: inputTokens, calls: toolcalls.New("block")}
}

// Started reports whether message_start was produced.
func (t *StreamTranslator) Started() bool { return t.started }

// Done reports whether the stream was finished or failed.
func (t *StreamTranslator) Done() bool { return t.done }

// Start returns message_start, once; later calls return nothing.
func (t *StreamTranslator) Start() []StreamEvent {
	if t.started || t.done {
		return nil
	}
	t.started = true
	return []StreamEvent{MessageStartEvent{Type: "message_start", Message: MessagesResponse{
		ID: t.id, Type: "message", Role: RoleAssistant, Model: t.model, Content: []ContentBlock{},
		Usage: Usage{InputTokens: t.inputTokens},
	}}}
}

// Chunk translates one upstream chunk. It fails only when the upstream
// breaks the chat stream's own rules in a way that cannot be rendered (a
// tool call resumed after another began, or one that never names its
// function); the gateway should then call Fail.
func (t *StreamTranslator) Chunk(c *openai.ChatChunk) ([]StreamEvent, error) {
	if t.done || c == nil {
		return nil, nil
	}
	evs := t.Start()
	if c.Usage != nil {
		u := *c.Usage
		t.usage = &u
	}
	for i := range c.Choices {
		ch := &c.Choices[i]
		if ch.Index != 0 {
			continue
		}
		d := &ch.Delta
		if d.ReasoningContent != nil && *d.ReasoningContent != "" {
			evs = t.ensure(evs, thinkingBlock)
			t.thinking.WriteString(*d.ReasoningContent)
			evs = append(evs, t.delta(BlockDelta{Type: DeltaThinking, Thinking: *d.ReasoningContent}))
		}
		for _, s := range []*string{d.Content, d.Refusal} {
			if s != nil && *s != "" {
				evs = t.ensure(evs, textBlock)
				evs = append(evs, t.delta(BlockDelta{Type: DeltaText, Text: *s}))
			}
		}
		for _, tc := range d.ToolCalls {
			var err error
			evs, err = t.toolCall(evs, tc)
			if err != nil {
				return evs, err
			}
		}
		if d.Content != nil || d.ReasoningContent != nil || len(d.ToolCalls) > 0 {
			t.deltaChunks++
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.finish = *ch.FinishReason
		}
		if ch.StopSequence != nil {
			s := *ch.StopSequence
			t.stopSequence = &s
		}
	}
	return evs, nil
}

func (t *StreamTranslator) delta(d BlockDelta) StreamEvent {
	return ContentBlockDeltaEvent{Type: "content_block_delta", Index: t.openIndex, Delta: d}
}

// ensure makes a block of kind k (text or thinking) the open one.
func (t *StreamTranslator) ensure(evs []StreamEvent, k blockKind) []StreamEvent {
	if t.open == k {
		return evs
	}
	evs = t.closeBlock(evs)
	var cb ContentBlock
	if k == textBlock {
		cb = ContentBlock{Type: BlockText}
	} else {
		cb = ContentBlock{Type: BlockThinking}
		t.thinking.Reset()
	}
	return t.openBlock(evs, k, cb)
}

func (t *StreamTranslator) openBlock(evs []StreamEvent, k blockKind, cb ContentBlock) []StreamEvent {
	t.open, t.openIndex = k, t.nextIndex
	t.nextIndex++
	t.anyBlock = true
	return append(evs, ContentBlockStartEvent{Type: "content_block_start", Index: t.openIndex, ContentBlock: cb})
}

// closeBlock closes the open block: a thinking block gets its signature
// first, a held-back tool call its arguments.
func (t *StreamTranslator) closeBlock(evs []StreamEvent) []StreamEvent {
	switch t.open {
	case noBlock:
		return evs
	case thinkingBlock:
		evs = append(evs, t.delta(BlockDelta{Type: DeltaSignature, Signature: ThinkingSignature(t.thinking.String())}))
	case toolBlock:
		tc := t.calls.Current
		if tc.Buffered {
			evs = append(evs, t.delta(BlockDelta{Type: DeltaInputJSON, PartialJSON: string(ToolInput(tc.Args.String()))}))
			tc.Sent = tc.Args.Len()
		}
		tc.Closed = true
		t.calls.Current = nil
	}
	evs = append(evs, ContentBlockStopEvent{Type: "content_block_stop", Index: t.openIndex})
	t.open = noBlock
	return evs
}

func (t *StreamTranslator) toolCall(evs []StreamEvent, tc openai.ToolCall) ([]StreamEvent, error) {
	t.evs = evs
	err := t.calls.Add(tc, renderer{t})
	evs, t.evs = t.evs, nil
	return evs, err
}

// renderer renders the sequenced tool calls as tool_use blocks.
type renderer struct{ t *StreamTranslator }

// Switch closes the open block before another call's begins.
func (r renderer) Switch() { r.t.evs = r.t.closeBlock(r.t.evs) }

// Flush opens a call's tool_use block once its name is known and sends the
// arguments that arrived since the last flush.
func (r renderer) Flush(st *toolcalls.Call) { r.t.evs = r.t.flushTool(r.t.evs, st) }

func (renderer) ProtocolError(format string, args ...any) error {
	return protocolError(format, args...)
}

func (t *StreamTranslator) flushTool(evs []StreamEvent, st *toolcalls.Call) []StreamEvent {
	if !st.Opened {
		if st.Name == "" {
			return evs
		}
		if t.open != noBlock {
			evs = t.closeBlock(evs)
			t.calls.Current = st
		}
		st.Opened = true
		evs = t.openBlock(evs, toolBlock, ContentBlock{Type: BlockToolUse, ID: ToolUseID(st.ID, t.id, st.Pos), Name: st.Name})
	}
	if st.Buffered {
		return evs
	}
	args := st.Args.String()
	if st.Sent == 0 {
		trimmed := strings.TrimLeft(args, " \t\r\n")
		if trimmed == "" {
			return evs
		}
		if trimmed[0] != '{' {
			st.Buffered = true
			return evs
		}
	}
	if len(args) > st.Sent {
		evs = append(evs, t.delta(BlockDelta{Type: DeltaInputJSON, PartialJSON: args[st.Sent:]}))
		st.Sent = len(args)
	}
	return evs
}

// Finish ends the stream after the upstream finished: it closes the open
// block and returns message_delta and message_stop. When the upstream left
// a tool call without a function name, it returns an error event instead.
func (t *StreamTranslator) Finish() []StreamEvent {
	if t.done {
		return nil
	}
	evs := t.Start()
	if st := t.calls.Unnamed(); st != nil {
		return append(evs, t.Fail(protocolError("tool call %q never named its function", st.ID))...)
	}
	evs = t.closeBlock(evs)
	for _, st := range t.calls.Held {
		t.calls.Current = st
		evs = t.flushTool(evs, st)
		evs = t.closeBlock(evs)
	}
	t.calls.Held = nil
	if !t.anyBlock {
		evs = t.openBlock(evs, textBlock, ContentBlock{Type: BlockText})
		evs = t.closeBlock(evs)
	}
	reason, seq := StopReason(t.finish, t.stopSequence, len(t.calls.Order) > 0)
	usage := Usage{InputTokens: t.inputTokens, OutputTokens: t.deltaChunks}
	if t.usage != nil {
		usage.InputTokens = t.usage.PromptTokens
		usage.OutputTokens = t.usage.CompletionTokens
	}
	t.done = true
	return append(evs,
		MessageDeltaEvent{Type: "message_delta", Delta: MessageDelta{StopReason: &reason, StopSequence: seq}, Usage: usage},
		MessageStopEvent{Type: "message_stop"},
	)
}

// Fail ends the stream with an error event built from err (an
// *openai.Error keeps its type and message; anything else is an api_error
// that does not leak its text). Anthropic streams end right after an error
// event, with no message_delta or message_stop.
func (t *StreamTranslator) Fail(err error) []StreamEvent {
	if t.done {
		return nil
	}
	t.done = true
	_, env := FromError(err)
	return []StreamEvent{env}
}

// protocolError is the error for an upstream stream cortex cannot render.
func protocolError(format string, args ...any) error {
	return openai.ServerError("The model server sent an invalid stream: %s.", fmt.Sprintf(format, args...))
}

// WriteEvents writes events to w, each named by its type.
func WriteEvents(w *sse.Writer, events []StreamEvent) error {
	for _, ev := range events {
		if err := w.WriteJSON(ev.EventType(), ev); err != nil {
			return err
		}
	}
	return nil
}
