package responses

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/internal/toolcalls"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

type openItem struct {
	kind  string
	index int
	id    string
	// part is the open part's type ("" when none), text what it holds so
	// far; parts are the finished parts.
	part  string
	text  strings.Builder
	parts []OutputContent
	call  *toolcalls.Call
}

// StreamTranslator turns an OpenAI chat completion chunk stream into the
// Responses event stream, exactly as the API sends it: every event has its
// type and a sequence_number counting from 0;
//
//	response.created (status in_progress), response.in_progress
//	per output item, in the order the model produces them:
//	  reasoning: output_item.added {summary: [], content: []},
//	    content_part.added {reasoning_text}, reasoning_text.delta…,
//	    reasoning_text.done, content_part.done, output_item.done
//	    — or, when the request asked for reasoning.summary, the same with
//	    reasoning_summary_part.added / reasoning_summary_text.delta… /
//	    .done / reasoning_summary_part.done and the text as the summary;
//	  message: output_item.added {status in_progress, content: []},
//	    content_part.added {output_text, text ""}, output_text.delta…,
//	    output_text.done, content_part.done, output_item.done {completed};
//	  function_call: output_item.added {arguments "", call_id, name},
//	    function_call_arguments.delta…, function_call_arguments.done,
//	    output_item.done;
//	response.completed, or response.incomplete {incomplete_details:
//	{reason: max_output_tokens}} when the upstream stopped for length, or
//	response.failed {error} when it failed.
//
// Each event carries the output_index, content_index / summary_index and
// item_id of its item. Why raw reasoning by default: local models' thinking
// is their actual reasoning, which the API calls reasoning_text content;
// clients that ask for a summary (Codex does, and shows it) get it as the
// summary instead. Tool calls whose fragments interleave are held until
// the open call's arguments are complete, as in the Anthropic translator.
// Only choice 0 is read. Not safe for concurrent use.
type StreamTranslator struct {
	resp    *Response
	summary bool

	seq           int
	started, done bool
	nextIndex     int
	open          *openItem

	calls *toolcalls.Sequencer
	// evs collects the events the sequencer's callbacks render.
	evs []StreamEvent

	finish      string
	usage       *openai.Usage
	deltaChunks int
}

// NewStreamTranslator returns a translator for the response responseID
// (see ResponseID) to req, created at createdAt (Unix seconds).
func NewStreamTranslator(req *Request, responseID string, createdAt int64) *StreamTranslator {
	return &StreamTranslator{
		resp:    newResponse(req, responseID, createdAt),
		summary: req.Reasoning.WantsSummary(),
		calls:   toolcalls.New("item"),
	}
}

// Started reports whether response.created was produced.
func (t *StreamTranslator) Started() bool { return t.started }

// Done reports whether the stream was finished or failed.
func (t *StreamTranslator) Done() bool { return t.done }

// Response returns the response as it stands (complete after Finish).
func (t *StreamTranslator) Response() *Response { return t.resp }

func (t *StreamTranslator) emit(evs []StreamEvent, ev StreamEvent) []StreamEvent {
	ev.setSequence(t.seq)
	t.seq++
	return append(evs, ev)
}

// snapshot copies the response for an event, so later changes do not alter
// events already handed out.
func (t *StreamTranslator) snapshot() *Response {
	r := *t.resp
	r.Output = append([]OutputItem{}, t.resp.Output...)
	return &r
}

// Start returns response.created and response.in_progress, once.
func (t *StreamTranslator) Start() []StreamEvent {
	if t.started || t.done {
		return nil
	}
	t.started = true
	var evs []StreamEvent
	evs = t.emit(evs, &ResponseEvent{eventBase: base(EventCreated), Response: t.snapshot()})
	return t.emit(evs, &ResponseEvent{eventBase: base(EventInProgress), Response: t.snapshot()})
}

// Chunk translates one upstream chunk. It fails only when the upstream
// breaks the chat stream's rules in a way that cannot be rendered (a tool
// call resumed after its item closed, or one that never names its
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
			evs = t.reasoningDelta(evs, *d.ReasoningContent)
		}
		if d.Content != nil && *d.Content != "" {
			evs = t.messageDelta(evs, PartOutputText, *d.Content)
		}
		if d.Refusal != nil && *d.Refusal != "" {
			evs = t.messageDelta(evs, PartRefusal, *d.Refusal)
		}
		for _, tc := range d.ToolCalls {
			var err error
			if evs, err = t.toolCall(evs, tc); err != nil {
				return evs, err
			}
		}
		if d.Content != nil || d.ReasoningContent != nil || len(d.ToolCalls) > 0 {
			t.deltaChunks++
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			t.finish = *ch.FinishReason
		}
	}
	return evs, nil
}

// openItemOf opens a reasoning or message item, closing the open one.
func (t *StreamTranslator) openItemOf(evs []StreamEvent, kind string) []StreamEvent {
	evs = t.closeItem(evs, StatusCompleted)
	it := &openItem{kind: kind, index: t.nextIndex, id: ItemID(t.resp.ID, kind, t.nextIndex)}
	t.nextIndex++
	t.open = it
	added := OutputItem{Type: kind, ID: it.id, Status: StatusInProgress}
	if kind == OutputReasoning {
		added.Summary = []SummaryText{}
		if !t.summary {
			added.Content = []OutputContent{}
		}
	}
	return t.emit(evs, &OutputItemEvent{eventBase: base(EventOutputItemAdded), OutputIndex: it.index, Item: added})
}

func (t *StreamTranslator) reasoningDelta(evs []StreamEvent, s string) []StreamEvent {
	if t.open == nil || t.open.kind != OutputReasoning {
		evs = t.openItemOf(evs, OutputReasoning)
	}
	it := t.open
	if t.summary {
		if it.part == "" {
			it.part = PartSummaryText
			evs = t.emit(evs, &SummaryPartEvent{eventBase: base(EventSummaryPartAdded), ItemID: it.id, OutputIndex: it.index,
				SummaryIndex: len(it.parts), Part: SummaryText{Type: PartSummaryText}})
		}
		it.text.WriteString(s)
		return t.emit(evs, &SummaryTextDeltaEvent{eventBase: base(EventSummaryTextDelta), ItemID: it.id, OutputIndex: it.index,
			SummaryIndex: len(it.parts), Delta: s})
	}
	if it.part == "" {
		it.part = PartReasoningText
		evs = t.emit(evs, &ContentPartEvent{eventBase: base(EventContentPartAdded), ItemID: it.id, OutputIndex: it.index,
			ContentIndex: len(it.parts), Part: OutputContent{Type: PartReasoningText}})
	}
	it.text.WriteString(s)
	return t.emit(evs, &ReasoningTextDeltaEvent{eventBase: base(EventReasoningTextDelta), ItemID: it.id, OutputIndex: it.index,
		ContentIndex: len(it.parts), Delta: s})
}

func (t *StreamTranslator) messageDelta(evs []StreamEvent, part, s string) []StreamEvent {
	if t.open == nil || t.open.kind != OutputMessage {
		evs = t.openItemOf(evs, OutputMessage)
	}
	it := t.open
	if it.part != part {
		evs = t.closePart(evs)
		it.part = part
		evs = t.emit(evs, &ContentPartEvent{eventBase: base(EventContentPartAdded), ItemID: it.id, OutputIndex: it.index,
			ContentIndex: len(it.parts), Part: OutputContent{Type: part}})
	}
	it.text.WriteString(s)
	if part == PartRefusal {
		return t.emit(evs, &RefusalDeltaEvent{eventBase: base(EventRefusalDelta), ItemID: it.id, OutputIndex: it.index,
			ContentIndex: len(it.parts), Delta: s})
	}
	return t.emit(evs, &OutputTextDeltaEvent{eventBase: base(EventOutputTextDelta), ItemID: it.id, OutputIndex: it.index,
		ContentIndex: len(it.parts), Delta: s, Logprobs: []any{}})
}

// closePart ends the open item's open part.
func (t *StreamTranslator) closePart(evs []StreamEvent) []StreamEvent {
	it := t.open
	if it == nil || it.part == "" {
		return evs
	}
	text := it.text.String()
	idx := len(it.parts)
	done := OutputContent{Type: it.part, Text: text}
	switch it.part {
	case PartOutputText:
		evs = t.emit(evs, &OutputTextDoneEvent{eventBase: base(EventOutputTextDone), ItemID: it.id, OutputIndex: it.index, ContentIndex: idx, Text: text, Logprobs: []any{}})
	case PartRefusal:
		done = OutputContent{Type: PartRefusal, Refusal: text}
		evs = t.emit(evs, &RefusalDoneEvent{eventBase: base(EventRefusalDone), ItemID: it.id, OutputIndex: it.index, ContentIndex: idx, Refusal: text})
	case PartReasoningText:
		evs = t.emit(evs, &ReasoningTextDoneEvent{eventBase: base(EventReasoningTextDone), ItemID: it.id, OutputIndex: it.index, ContentIndex: idx, Text: text})
	case PartSummaryText:
		evs = t.emit(evs, &SummaryTextDoneEvent{eventBase: base(EventSummaryTextDone), ItemID: it.id, OutputIndex: it.index, SummaryIndex: idx, Text: text})
		evs = t.emit(evs, &SummaryPartEvent{eventBase: base(EventSummaryPartDone), ItemID: it.id, OutputIndex: it.index, SummaryIndex: idx, Part: SummaryText{Type: PartSummaryText, Text: text}})
	}
	if it.part != PartSummaryText {
		evs = t.emit(evs, &ContentPartEvent{eventBase: base(EventContentPartDone), ItemID: it.id, OutputIndex: it.index, ContentIndex: idx, Part: done})
	}
	it.parts = append(it.parts, done)
	it.part = ""
	it.text.Reset()
	return evs
}

// closeItem ends the open item with status and files it in the output.
func (t *StreamTranslator) closeItem(evs []StreamEvent, status string) []StreamEvent {
	it := t.open
	if it == nil {
		return evs
	}
	evs = t.closePart(evs)
	item := OutputItem{Type: it.kind, ID: it.id, Status: status}
	switch it.kind {
	case OutputMessage:
		item.Content = it.parts
	case OutputReasoning:
		if t.summary {
			item.Summary = make([]SummaryText, len(it.parts))
			for i, p := range it.parts {
				item.Summary[i] = SummaryText{Type: PartSummaryText, Text: p.Text}
			}
		} else {
			item.Summary = []SummaryText{}
			item.Content = it.parts
		}
	case OutputFunctionCall:
		c := it.call
		item.CallID, item.Name, item.Arguments = c.ID, c.Name, c.Args.String()
		evs = t.emit(evs, &FunctionArgumentsDoneEvent{eventBase: base(EventFunctionArgumentsDone), ItemID: it.id, OutputIndex: it.index, Arguments: item.Arguments})
		c.Closed = true
		if t.calls.Current == c {
			t.calls.Current = nil
		}
	}
	t.resp.Output = append(t.resp.Output, item)
	t.open = nil
	return t.emit(evs, &OutputItemEvent{eventBase: base(EventOutputItemDone), OutputIndex: it.index, Item: item})
}

func (t *StreamTranslator) toolCall(evs []StreamEvent, tc openai.ToolCall) ([]StreamEvent, error) {
	t.evs = evs
	err := t.calls.Add(tc, renderer{t})
	evs, t.evs = t.evs, nil
	return evs, err
}

// renderer renders the sequenced tool calls as function_call items.
type renderer struct{ t *StreamTranslator }

// Switch closes the open function_call item before another call's begins
// (a message item closes when the call's item opens).
func (r renderer) Switch() {
	if r.t.open != nil && r.t.open.kind == OutputFunctionCall {
		r.t.evs = r.t.closeItem(r.t.evs, StatusCompleted)
	}
}

// Flush opens a call's item once its name is known and sends the arguments
// that arrived since.
func (r renderer) Flush(st *toolcalls.Call) { r.t.evs = r.t.flushCall(r.t.evs, st) }

func (renderer) ProtocolError(format string, args ...any) error {
	return protocolError(format, args...)
}

// flushCall opens st's item once its name is known and sends the
// arguments that arrived since.
func (t *StreamTranslator) flushCall(evs []StreamEvent, st *toolcalls.Call) []StreamEvent {
	if !st.Opened {
		if st.Name == "" {
			return evs
		}
		st.Opened = true
		if st.ID == "" {
			st.ID = CallID("", t.resp.ID, t.nextIndex)
		}
		evs = t.closeItem(evs, StatusCompleted)
		evs = t.openCallItem(evs, st)
	}
	args := st.Args.String()
	if len(args) > st.Sent {
		evs = t.emit(evs, &FunctionArgumentsDeltaEvent{eventBase: base(EventFunctionArgumentsDelta), ItemID: t.open.id, OutputIndex: t.open.index, Delta: args[st.Sent:]})
		st.Sent = len(args)
	}
	return evs
}

func (t *StreamTranslator) openCallItem(evs []StreamEvent, st *toolcalls.Call) []StreamEvent {
	t.nextIndex++
	it := &openItem{kind: OutputFunctionCall, index: t.nextIndex - 1, call: st}
	it.id = ItemID(t.resp.ID, OutputFunctionCall, it.index)
	t.open = it
	added := OutputItem{Type: OutputFunctionCall, ID: it.id, Status: StatusInProgress, CallID: st.ID, Name: st.Name}
	return t.emit(evs, &OutputItemEvent{eventBase: base(EventOutputItemAdded), OutputIndex: it.index, Item: added})
}

// Finish ends the stream after the upstream finished: it closes the open
// item and returns response.completed, or response.incomplete when the
// upstream stopped for length or a content filter. When the upstream left
// a tool call without a function name it fails the response instead.
func (t *StreamTranslator) Finish() []StreamEvent {
	if t.done {
		return nil
	}
	evs := t.Start()
	if st := t.calls.Unnamed(); st != nil {
		return append(evs, t.Fail(protocolError("tool call %q never named its function", st.ID))...)
	}
	status, details := finishStatus(t.finish)
	last := itemStatus(status)
	for _, st := range t.calls.Held {
		// flushCall closes the item before it.
		t.calls.Current = st
		evs = t.flushCall(evs, st)
	}
	t.calls.Held = nil
	evs = t.closeItem(evs, last)
	if len(t.resp.Output) == 0 {
		evs = t.messageDelta(evs, PartOutputText, "")
		evs = t.closeItem(evs, last)
	}
	t.resp.Status, t.resp.IncompleteDetails = status, details
	t.resp.Usage = usageFrom(t.usage, 0, t.deltaChunks)
	t.done = true
	typ := EventCompleted
	if status == StatusIncomplete {
		typ = EventIncomplete
	}
	return t.emit(evs, &ResponseEvent{eventBase: base(typ), Response: t.snapshot()})
}

// Fail ends the stream with response.failed, its error built from err (an
// *openai.Error keeps its code and message, so codes such as
// context_length_exceeded reach the client; anything else is a
// server_error that does not leak its text). Items still open stay out of
// the output.
func (t *StreamTranslator) Fail(err error) []StreamEvent {
	if t.done {
		return nil
	}
	evs := t.Start()
	t.done = true
	e := openai.AsError(err)
	t.resp.Status = StatusFailed
	t.resp.Error = &ResponseError{Code: failureCode(e), Message: e.Message}
	return t.emit(evs, &ResponseEvent{eventBase: base(EventFailed), Response: t.snapshot()})
}

// failureCode is the response error code for e: its own code when it has
// one, else one the Responses API uses for its status.
func failureCode(e *openai.Error) string {
	if e.Code != "" {
		return e.Code
	}
	switch {
	case e.Status == http.StatusTooManyRequests:
		return openai.CodeRateLimitExceeded
	case e.Status >= 400 && e.Status < 500:
		return "invalid_prompt"
	}
	return openai.CodeServerError
}

// ErrorEventFor returns an error event for err, for a gateway that must
// report a failure on a stream it has not started a response on.
func ErrorEventFor(err error, sequence int) StreamEvent {
	e := openai.AsError(err)
	ev := &ErrorEvent{eventBase: base(EventError), Message: e.Message}
	code := failureCode(e)
	ev.Code = &code
	if e.Param != "" {
		p := e.Param
		ev.Param = &p
	}
	ev.setSequence(sequence)
	return ev
}

func protocolError(format string, args ...any) error {
	return openai.ServerError("The model server sent an invalid stream: %s.", fmt.Sprintf(format, args...))
}
