package ssecheck

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/helexa-ai/cortex/internal/wire/sse"
)

type respPart struct {
	typ      string
	text     strings.Builder
	textDone bool
	done     bool
	final    string
}

type respItem struct {
	id, typ   string
	index     int64
	parts     []*respPart
	summaries []*respPart
	args      strings.Builder
	argsDone  bool
	callID    string
	name      string
}

type responsesState struct {
	seq     int64
	id      string
	events  int
	items   []*respItem
	open    *respItem
	itemIDs map[string]bool
}

// ResponsesStream reads a Responses API stream to its end and reports
// the first departure from the event grammar OpenAI's SDKs and Codex rely
// on: every event has "type" (equal to the event name when there is one)
// and a sequence_number counting up from 0 by one; response.created (status
// in_progress) then response.in_progress; output items one at a time at
// output_index 0, 1, 2…: output_item.added, then for a message each
// content_part.added, its output_text (or refusal) deltas and done,
// content_part.done; for a reasoning item its summary parts or
// reasoning_text parts likewise; for a function_call its
// function_call_arguments deltas and done; then output_item.done carrying
// the finished item, whose text and arguments must equal what the deltas
// added up to; item_id and output_index always those of the open item; and
// last response.completed, response.incomplete or response.failed whose
// output lists the finished items, or an error event. A trailing
// "data: [DONE]" is tolerated.
func ResponsesStream(r io.Reader) error {
	it := &eventIter{r: sse.NewReader(r)}
	st := &responsesState{itemIDs: map[string]bool{}}
	for {
		ev, err := it.next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("stream ended after %d events without a terminal event", it.n)
		}
		if err != nil {
			return fmt.Errorf("reading event %d: %w", it.n+1, err)
		}
		if ev.IsDone() {
			return it.errf("[DONE] before a terminal event")
		}
		o, err := decodeObj(ev.Data)
		if err != nil {
			return it.errf("%v", err)
		}
		typ, err := o.mustStr("type")
		if err != nil {
			return it.errf("%v", err)
		}
		if ev.Event != "" && ev.Event != typ {
			return it.errf("event name %q but type %q", ev.Event, typ)
		}
		seq, err := o.mustInt("sequence_number")
		if err != nil {
			return it.errf("%s: %v", typ, err)
		}
		if seq != st.seq {
			return it.errf("%s: sequence_number %d, want %d", typ, seq, st.seq)
		}
		st.seq++
		st.events++
		done, err := st.step(typ, o)
		if err != nil {
			return it.errf("%s: %v", typ, err)
		}
		if done {
			return it.expectEnd(true)
		}
	}
}

func (st *responsesState) step(typ string, o obj) (bool, error) {
	if st.events == 1 && typ != "response.created" && typ != "error" {
		return false, errors.New("first event must be response.created")
	}
	if st.events == 2 && typ != "response.in_progress" && typ != "error" && typ != "response.failed" {
		return false, errors.New("second event must be response.in_progress")
	}
	switch typ {
	case "response.created", "response.in_progress":
		if (typ == "response.created") != (st.events == 1) {
			return false, errors.New("out of place")
		}
		return false, st.checkResponse(o, "in_progress")
	case "response.output_item.added":
		return false, st.itemAdded(o)
	case "response.output_item.done":
		return false, st.itemDone(o)
	case "response.content_part.added":
		return false, st.partAdded(o, false)
	case "response.content_part.done":
		return false, st.partDone(o, false)
	case "response.reasoning_summary_part.added":
		return false, st.partAdded(o, true)
	case "response.reasoning_summary_part.done":
		return false, st.partDone(o, true)
	case "response.output_text.delta", "response.refusal.delta", "response.reasoning_text.delta", "response.reasoning_summary_text.delta":
		return false, st.textDelta(typ, o)
	case "response.output_text.done", "response.refusal.done", "response.reasoning_text.done", "response.reasoning_summary_text.done":
		return false, st.textDone(typ, o)
	case "response.function_call_arguments.delta", "response.function_call_arguments.done":
		return false, st.arguments(typ, o)
	case "response.completed":
		return true, st.terminal(o, "completed")
	case "response.incomplete":
		return true, st.terminal(o, "incomplete")
	case "response.failed":
		return true, st.terminal(o, "failed")
	case "error":
		for _, k := range []string{"message"} {
			if _, err := o.mustStr(k); err != nil {
				return false, err
			}
		}
		if !o.has("code") || !o.has("param") {
			return false, errors.New(`error event needs "code" and "param" (null when unknown)`)
		}
		return true, nil
	default:
		return false, fmt.Errorf("unknown event type %q", typ)
	}
}

func (st *responsesState) checkResponse(o obj, wantStatus string) error {
	resp, err := o.mustObj("response")
	if err != nil {
		return err
	}
	id, err := resp.mustStr("id")
	if err != nil || id == "" {
		return errors.New("response.id is missing or empty")
	}
	if st.id == "" {
		st.id = id
	} else if id != st.id {
		return fmt.Errorf("response.id changed from %q to %q", st.id, id)
	}
	if obj, _ := resp.str("object"); obj != "response" {
		return fmt.Errorf(`response.object = %q, want "response"`, obj)
	}
	if status, _ := resp.str("status"); status != wantStatus {
		return fmt.Errorf("response.status = %q, want %q", status, wantStatus)
	}
	if _, err := resp.mustInt("created_at"); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	if _, err := resp.mustStr("model"); err != nil {
		return fmt.Errorf("response: %w", err)
	}
	if _, ok := resp.list("output"); !ok {
		return errors.New("response.output must be an array")
	}
	return nil
}

// ref checks item_id and output_index name the open item.
func (st *responsesState) ref(o obj) (*respItem, error) {
	if st.open == nil {
		return nil, errors.New("no output item is open")
	}
	id, _ := o.str("item_id")
	idx, ok := o.int("output_index")
	if !ok {
		return nil, errors.New(`"output_index" is missing or not an integer`)
	}
	if id != st.open.id || idx != st.open.index {
		return nil, fmt.Errorf("item_id %q / output_index %d, but the open item is %q / %d", id, idx, st.open.id, st.open.index)
	}
	return st.open, nil
}

func (st *responsesState) itemAdded(o obj) error {
	if st.open != nil {
		return fmt.Errorf("item added while item %q is open", st.open.id)
	}
	idx, err := o.mustInt("output_index")
	if err != nil {
		return err
	}
	if idx != int64(len(st.items)) {
		return fmt.Errorf("output_index %d, want %d", idx, len(st.items))
	}
	item, err := o.mustObj("item")
	if err != nil {
		return err
	}
	it := &respItem{index: idx}
	it.id, _ = item.str("id")
	it.typ, _ = item.str("type")
	if it.id == "" {
		return errors.New("item.id is missing or empty")
	}
	if st.itemIDs[it.id] {
		return fmt.Errorf("item id %q used twice", it.id)
	}
	st.itemIDs[it.id] = true
	switch it.typ {
	case "message":
		if r, _ := item.str("role"); r != "assistant" {
			return fmt.Errorf(`message item role %q, want "assistant"`, r)
		}
		if s, _ := item.str("status"); s != "in_progress" {
			return fmt.Errorf(`message item status %q, want "in_progress"`, s)
		}
		if c, ok := item.list("content"); !ok || len(c) != 0 {
			return errors.New("message item must start with content []")
		}
	case "function_call":
		it.callID, _ = item.str("call_id")
		it.name, _ = item.str("name")
		if it.callID == "" || it.name == "" {
			return errors.New("function_call item needs call_id and name")
		}
		if a, ok := item.str("arguments"); !ok || a != "" {
			return errors.New(`function_call item must start with arguments ""`)
		}
		if s, _ := item.str("status"); s != "in_progress" {
			return fmt.Errorf(`function_call item status %q, want "in_progress"`, s)
		}
	case "reasoning":
		if s, ok := item.list("summary"); !ok || len(s) != 0 {
			return errors.New("reasoning item must start with summary []")
		}
	default:
		return fmt.Errorf("unexpected item type %q", it.typ)
	}
	st.items = append(st.items, it)
	st.open = it
	return nil
}

func (st *responsesState) partAdded(o obj, summary bool) error {
	it, err := st.ref(o)
	if err != nil {
		return err
	}
	idxKey, list := "content_index", &it.parts
	if summary {
		idxKey, list = "summary_index", &it.summaries
	}
	idx, err := o.mustInt(idxKey)
	if err != nil {
		return err
	}
	if idx != int64(len(*list)) {
		return fmt.Errorf("%s %d, want %d", idxKey, idx, len(*list))
	}
	if n := len(*list); n > 0 && !(*list)[n-1].done {
		return fmt.Errorf("part added while part %d is open", n-1)
	}
	for _, p := range it.parts {
		if !p.done {
			return errors.New("part added while a content part is open")
		}
	}
	for _, p := range it.summaries {
		if !p.done {
			return errors.New("part added while a summary part is open")
		}
	}
	part, err := o.mustObj("part")
	if err != nil {
		return err
	}
	pt, _ := part.str("type")
	okType := map[string][]string{
		"message":   {"output_text", "refusal"},
		"reasoning": {"reasoning_text"},
	}[it.typ]
	if summary {
		okType = nil
		if it.typ == "reasoning" {
			okType = []string{"summary_text"}
		}
	}
	found := false
	for _, t := range okType {
		found = found || t == pt
	}
	if !found {
		return fmt.Errorf("part type %q in a %s item", pt, it.typ)
	}
	textKey := "text"
	if pt == "refusal" {
		textKey = "refusal"
	}
	if s, ok := part.str(textKey); !ok || s != "" {
		return fmt.Errorf("part must start with %s \"\"", textKey)
	}
	if pt == "output_text" {
		if a, ok := part.list("annotations"); !ok || len(a) != 0 {
			return errors.New("output_text part must start with annotations []")
		}
	}
	*list = append(*list, &respPart{typ: pt})
	return nil
}

func (st *responsesState) partDone(o obj, summary bool) error {
	it, err := st.ref(o)
	if err != nil {
		return err
	}
	idxKey, list := "content_index", it.parts
	if summary {
		idxKey, list = "summary_index", it.summaries
	}
	p, err := openPart(o, idxKey, list)
	if err != nil {
		return err
	}
	if !p.textDone {
		return fmt.Errorf("part done before its %s done event", p.typ)
	}
	part, err := o.mustObj("part")
	if err != nil {
		return err
	}
	if pt, _ := part.str("type"); pt != p.typ {
		return fmt.Errorf("part type %q, was %q", pt, p.typ)
	}
	textKey := "text"
	if p.typ == "refusal" {
		textKey = "refusal"
	}
	if s, _ := part.str(textKey); s != p.final {
		return fmt.Errorf("part %s %.60q differs from the deltas' %.60q", textKey, s, p.final)
	}
	p.done = true
	return nil
}

func openPart(o obj, idxKey string, list []*respPart) (*respPart, error) {
	idx, err := o.mustInt(idxKey)
	if err != nil {
		return nil, err
	}
	if idx < 0 || idx >= int64(len(list)) || list[idx].done {
		return nil, fmt.Errorf("%s %d is not an open part", idxKey, idx)
	}
	if idx != int64(len(list)-1) {
		return nil, fmt.Errorf("%s %d is not the latest part", idxKey, idx)
	}
	return list[idx], nil
}

var textEventPart = map[string]struct{ part, idxKey string }{
	"response.output_text":            {"output_text", "content_index"},
	"response.refusal":                {"refusal", "content_index"},
	"response.reasoning_text":         {"reasoning_text", "content_index"},
	"response.reasoning_summary_text": {"summary_text", "summary_index"},
}

func (st *responsesState) textDelta(typ string, o obj) error {
	spec := textEventPart[strings.TrimSuffix(typ, ".delta")]
	p, err := st.textPart(o, spec.part, spec.idxKey)
	if err != nil {
		return err
	}
	if p.textDone {
		return errors.New("delta after done")
	}
	d, err := o.mustStr("delta")
	if err != nil {
		return err
	}
	if spec.part == "output_text" {
		if _, ok := o.list("logprobs"); !ok {
			return errors.New(`"logprobs" must be an array`)
		}
	}
	p.text.WriteString(d)
	return nil
}

func (st *responsesState) textDone(typ string, o obj) error {
	spec := textEventPart[strings.TrimSuffix(typ, ".done")]
	p, err := st.textPart(o, spec.part, spec.idxKey)
	if err != nil {
		return err
	}
	if p.textDone {
		return errors.New("done twice")
	}
	key := "text"
	if spec.part == "refusal" {
		key = "refusal"
	}
	s, err := o.mustStr(key)
	if err != nil {
		return err
	}
	if s != p.text.String() {
		return fmt.Errorf("%s %.60q differs from the deltas' %.60q", key, s, p.text.String())
	}
	p.textDone, p.final = true, s
	return nil
}

func (st *responsesState) textPart(o obj, partType, idxKey string) (*respPart, error) {
	it, err := st.ref(o)
	if err != nil {
		return nil, err
	}
	list := it.parts
	if idxKey == "summary_index" {
		list = it.summaries
	}
	p, err := openPart(o, idxKey, list)
	if err != nil {
		return nil, err
	}
	if p.typ != partType {
		return nil, fmt.Errorf("%s event for a %s part", partType, p.typ)
	}
	return p, nil
}

func (st *responsesState) arguments(typ string, o obj) error {
	it, err := st.ref(o)
	if err != nil {
		return err
	}
	if it.typ != "function_call" {
		return fmt.Errorf("arguments event in a %s item", it.typ)
	}
	if it.argsDone {
		return errors.New("arguments event after function_call_arguments.done")
	}
	if strings.HasSuffix(typ, ".delta") {
		d, err := o.mustStr("delta")
		if err != nil {
			return err
		}
		it.args.WriteString(d)
		return nil
	}
	a, err := o.mustStr("arguments")
	if err != nil {
		return err
	}
	if a != it.args.String() {
		return fmt.Errorf("arguments %.60q differ from the deltas' %.60q", a, it.args.String())
	}
	it.argsDone = true
	return nil
}

func (st *responsesState) itemDone(o obj) error {
	if st.open == nil {
		return errors.New("no output item is open")
	}
	idx, err := o.mustInt("output_index")
	if err != nil {
		return err
	}
	item, err := o.mustObj("item")
	if err != nil {
		return err
	}
	it := st.open
	if id, _ := item.str("id"); id != it.id || idx != it.index {
		return fmt.Errorf("item %q / output_index %d, but the open item is %q / %d", id, idx, it.id, it.index)
	}
	if t, _ := item.str("type"); t != it.typ {
		return fmt.Errorf("item type %q, was %q", t, it.typ)
	}
	for _, p := range append(append([]*respPart{}, it.parts...), it.summaries...) {
		if !p.done {
			return errors.New("item done with a part still open")
		}
	}
	if err := checkFinishedItem(it, item); err != nil {
		return err
	}
	st.open = nil
	return nil
}

func checkFinishedItem(it *respItem, item obj) error {
	switch it.typ {
	case "message":
		if s, _ := item.str("status"); s != "completed" && s != "incomplete" {
			return fmt.Errorf("finished message status %q", s)
		}
		content, err := item.objList("content")
		if err != nil {
			return err
		}
		if err := sameParts("content", content, it.parts); err != nil {
			return err
		}
	case "function_call":
		if s, _ := item.str("status"); s != "completed" && s != "incomplete" {
			return fmt.Errorf("finished function_call status %q", s)
		}
		if !it.argsDone {
			return errors.New("function_call done without function_call_arguments.done")
		}
		if a, _ := item.str("arguments"); a != it.args.String() {
			return fmt.Errorf("finished arguments %.60q differ from the deltas' %.60q", a, it.args.String())
		}
		c, _ := item.str("call_id")
		n, _ := item.str("name")
		if c != it.callID || n != it.name {
			return errors.New("call_id or name changed")
		}
	case "reasoning":
		summary, err := item.objList("summary")
		if err != nil {
			return err
		}
		if err := sameParts("summary", summary, it.summaries); err != nil {
			return err
		}
		if item.has("content") && !item.isNull("content") {
			content, err := item.objList("content")
			if err != nil {
				return err
			}
			if err := sameParts("content", content, it.parts); err != nil {
				return err
			}
		} else if len(it.parts) > 0 {
			return errors.New("finished reasoning item lacks the content it streamed")
		}
	}
	return nil
}

func sameParts(key string, got []obj, want []*respPart) error {
	if len(got) != len(want) {
		return fmt.Errorf("finished item has %d %s parts, %d were streamed", len(got), key, len(want))
	}
	for i, p := range want {
		textKey := "text"
		if p.typ == "refusal" {
			textKey = "refusal"
		}
		if t, _ := got[i].str("type"); t != p.typ {
			return fmt.Errorf("%s[%d] type %q, streamed %q", key, i, t, p.typ)
		}
		if s, _ := got[i].str(textKey); s != p.final {
			return fmt.Errorf("%s[%d] %s %.60q differs from the streamed %.60q", key, i, textKey, s, p.final)
		}
	}
	return nil
}

func (st *responsesState) terminal(o obj, status string) error {
	if err := st.checkResponse(o, status); err != nil {
		return err
	}
	resp, _ := o.mustObj("response")
	switch status {
	case "completed":
		if st.open != nil {
			return fmt.Errorf("completed while item %q is open", st.open.id)
		}
	case "incomplete":
		d, ok := resp.obj("incomplete_details")
		if !ok {
			return errors.New("incomplete response needs incomplete_details")
		}
		if r, _ := d.str("reason"); r == "" {
			return errors.New("incomplete_details.reason is missing")
		}
		if st.open != nil {
			return fmt.Errorf("incomplete while item %q is open", st.open.id)
		}
	case "failed":
		e, ok := resp.obj("error")
		if !ok {
			return errors.New("failed response needs an error object")
		}
		if _, err := e.mustStr("message"); err != nil {
			return fmt.Errorf("response.error: %w", err)
		}
		if _, err := e.mustStr("code"); err != nil {
			return fmt.Errorf("response.error: %w", err)
		}
		return nil
	}
	output, err := resp.objList("output")
	if err != nil {
		return err
	}
	if len(output) != len(st.items) {
		return fmt.Errorf("response.output has %d items, %d were streamed", len(output), len(st.items))
	}
	for i, item := range output {
		want := st.items[i]
		if id, _ := item.str("id"); id != want.id {
			return fmt.Errorf("response.output[%d].id %q, streamed %q", i, id, want.id)
		}
		if err := checkFinishedItem(want, item); err != nil {
			return fmt.Errorf("response.output[%d]: %w", i, err)
		}
	}
	u, ok := resp.obj("usage")
	if !ok {
		return errors.New("response.usage is missing")
	}
	in, e1 := u.mustInt("input_tokens")
	out, e2 := u.mustInt("output_tokens")
	total, e3 := u.mustInt("total_tokens")
	if err := errors.Join(e1, e2, e3); err != nil {
		return fmt.Errorf("response.usage: %w", err)
	}
	if total != in+out {
		return fmt.Errorf("usage.total_tokens %d != %d + %d", total, in, out)
	}
	if _, ok := u.obj("input_tokens_details"); !ok {
		return errors.New("usage.input_tokens_details is missing")
	}
	if _, ok := u.obj("output_tokens_details"); !ok {
		return errors.New("usage.output_tokens_details is missing")
	}
	return nil
}
