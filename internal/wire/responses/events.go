package responses

import "github.com/helexa-ai/cortex/internal/wire/sse"

// StreamEvent is one event of a Responses stream. Every event carries its
// type and a sequence_number; the StreamTranslator numbers them.
type StreamEvent interface {
	EventType() string
	setSequence(n int)
}

// eventBase holds the fields every event has.
type eventBase struct {
	Type           string `json:"type"`
	SequenceNumber int    `json:"sequence_number"`
}

func (e *eventBase) EventType() string { return e.Type }
func (e *eventBase) setSequence(n int) { e.SequenceNumber = n }

// Sequence returns the event's sequence_number.
func (e *eventBase) Sequence() int { return e.SequenceNumber }

func base(typ string) eventBase { return eventBase{Type: typ} }

// Event types.
const (
	EventCreated                = "response.created"
	EventInProgress             = "response.in_progress"
	EventCompleted              = "response.completed"
	EventIncomplete             = "response.incomplete"
	EventFailed                 = "response.failed"
	EventOutputItemAdded        = "response.output_item.added"
	EventOutputItemDone         = "response.output_item.done"
	EventContentPartAdded       = "response.content_part.added"
	EventContentPartDone        = "response.content_part.done"
	EventOutputTextDelta        = "response.output_text.delta"
	EventOutputTextDone         = "response.output_text.done"
	EventRefusalDelta           = "response.refusal.delta"
	EventRefusalDone            = "response.refusal.done"
	EventReasoningTextDelta     = "response.reasoning_text.delta"
	EventReasoningTextDone      = "response.reasoning_text.done"
	EventSummaryPartAdded       = "response.reasoning_summary_part.added"
	EventSummaryPartDone        = "response.reasoning_summary_part.done"
	EventSummaryTextDelta       = "response.reasoning_summary_text.delta"
	EventSummaryTextDone        = "response.reasoning_summary_text.done"
	EventFunctionArgumentsDelta = "response.function_call_arguments.delta"
	EventFunctionArgumentsDone  = "response.function_call_arguments.done"
	EventError                  = "error"
)

// ResponseEvent is response.created, in_progress, completed, incomplete
// or failed: the whole response as it stands.
type ResponseEvent struct {
	eventBase
	Response *Response `json:"response"`
}

// OutputItemEvent is response.output_item.added or .done.
type OutputItemEvent struct {
	eventBase
	OutputIndex int        `json:"output_index"`
	Item        OutputItem `json:"item"`
}

// ContentPartEvent is response.content_part.added or .done.
type ContentPartEvent struct {
	eventBase
	ItemID       string        `json:"item_id"`
	OutputIndex  int           `json:"output_index"`
	ContentIndex int           `json:"content_index"`
	Part         OutputContent `json:"part"`
}

// SummaryPartEvent is response.reasoning_summary_part.added or .done.
type SummaryPartEvent struct {
	eventBase
	ItemID       string      `json:"item_id"`
	OutputIndex  int         `json:"output_index"`
	SummaryIndex int         `json:"summary_index"`
	Part         SummaryText `json:"part"`
}

// OutputTextDeltaEvent is response.output_text.delta.
type OutputTextDeltaEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
	Logprobs     []any  `json:"logprobs"`
}

// OutputTextDoneEvent is response.output_text.done.
type OutputTextDoneEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Text         string `json:"text"`
	Logprobs     []any  `json:"logprobs"`
}

// RefusalDeltaEvent is response.refusal.delta.
type RefusalDeltaEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
}

// RefusalDoneEvent is response.refusal.done.
type RefusalDoneEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Refusal      string `json:"refusal"`
}

// ReasoningTextDeltaEvent is response.reasoning_text.delta.
type ReasoningTextDeltaEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Delta        string `json:"delta"`
}

// ReasoningTextDoneEvent is response.reasoning_text.done.
type ReasoningTextDoneEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	ContentIndex int    `json:"content_index"`
	Text         string `json:"text"`
}

// SummaryTextDeltaEvent is response.reasoning_summary_text.delta.
type SummaryTextDeltaEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	SummaryIndex int    `json:"summary_index"`
	Delta        string `json:"delta"`
}

// SummaryTextDoneEvent is response.reasoning_summary_text.done.
type SummaryTextDoneEvent struct {
	eventBase
	ItemID       string `json:"item_id"`
	OutputIndex  int    `json:"output_index"`
	SummaryIndex int    `json:"summary_index"`
	Text         string `json:"text"`
}

// FunctionArgumentsDeltaEvent is response.function_call_arguments.delta.
type FunctionArgumentsDeltaEvent struct {
	eventBase
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Delta       string `json:"delta"`
}

// FunctionArgumentsDoneEvent is response.function_call_arguments.done.
type FunctionArgumentsDoneEvent struct {
	eventBase
	ItemID      string `json:"item_id"`
	OutputIndex int    `json:"output_index"`
	Arguments   string `json:"arguments"`
}

// ErrorEvent is the error event: a stream-level failure.
type ErrorEvent struct {
	eventBase
	Code    *string `json:"code"`
	Message string  `json:"message"`
	Param   *string `json:"param"`
}

// WriteEvents writes events to w, each named by its type (the SDKs read
// the data's type; the name helps plain EventSource clients).
func WriteEvents(w *sse.Writer, events []StreamEvent) error {
	for _, ev := range events {
		if err := w.WriteJSON(ev.EventType(), ev); err != nil {
			return err
		}
	}
	return nil
}
