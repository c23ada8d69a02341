// Package sse reads and writes Server-Sent Events (text/event-stream) the
// way the OpenAI and Anthropic APIs use them. The checkers of each
// dialect's event grammar, for tests, are in package ssecheck.
package sse

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// ContentType is the media type of an event stream.
const ContentType = "text/event-stream"

// Done is the data of the event that ends an OpenAI stream.
const Done = "[DONE]"

// Event is one dispatched event.
type Event struct {
	// Event is the event name ("event:" field); "" for unnamed events.
	Event string
	// Data is the data lines joined with "\n".
	Data string
	// ID is the last event id seen ("id:" field), "" if none.
	ID string
	// Retry is the reconnection time in milliseconds ("retry:"), 0 if none.
	Retry int
}

// IsDone reports whether e is the OpenAI end-of-stream marker.
func (e Event) IsDone() bool { return e.Data == Done }

// Writer writes events to w, flushing after each one when w can flush
// (http.Flusher, or an http.ResponseWriter whose wrappers unwrap to one), so
// every event reaches the client as soon as it is written.
type Writer struct {
	w     io.Writer
	flush func() error
	buf   bytes.Buffer
	// manual, when set, leaves flushing to the caller (see SetManualFlush).
	manual bool
}

// SetManualFlush stops flushing after every event; the caller then calls
// Flush. A relay uses it to send events that arrived together in one write,
// flushing whenever its source has nothing more buffered.
func (w *Writer) SetManualFlush(manual bool) { w.manual = manual }

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer {
	sw := &Writer{w: w}
	switch f := w.(type) {
	case interface{ FlushError() error }:
		sw.flush = f.FlushError
	case http.Flusher:
		sw.flush = func() error { f.Flush(); return nil }
	case http.ResponseWriter:
		rc := http.NewResponseController(f)
		sw.flush = func() error {
			if err := rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
				return err
			}
			return nil
		}
	}
	return sw
}

// WriteEvent writes one event named name ("" for none) with data. Data that
// spans lines becomes several data lines, so the reader gets it back whole.
func (w *Writer) WriteEvent(name string, data []byte) error {
	if strings.ContainsAny(name, "\r\n") {
		return fmt.Errorf("writing event: name %q contains a line break", name)
	}
	w.buf.Reset()
	if name != "" {
		w.buf.WriteString("event: ")
		w.buf.WriteString(name)
		w.buf.WriteByte('\n')
	}
	writeDataLines(&w.buf, data)
	w.buf.WriteByte('\n')
	return w.emit()
}

func writeDataLines(b *bytes.Buffer, data []byte) {
	// Normalise CR and CRLF to LF first: a bare CR inside data would end the
	// line for the reader.
	if bytes.IndexByte(data, '\r') >= 0 {
		data = bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		data = bytes.ReplaceAll(data, []byte("\r"), []byte("\n"))
	}
	for {
		line, rest, more := bytes.Cut(data, []byte("\n"))
		b.WriteString("data: ")
		b.Write(line)
		b.WriteByte('\n')
		if !more {
			return
		}
		data = rest
	}
}

// WriteJSON writes v, encoded as JSON on one line, as an event named name.
func (w *Writer) WriteJSON(name string, v any) error {
	data, err := Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding %s event: %w", name, err)
	}
	return w.WriteEvent(name, data)
}

// WriteDone writes the OpenAI end-of-stream marker "data: [DONE]".
func (w *Writer) WriteDone() error { return w.WriteEvent("", []byte(Done)) }

// Comment writes a comment line, which every client ignores; keep-alives
// during long prefills and cold loads are ": ping".
func (w *Writer) Comment(text string) error {
	w.buf.Reset()
	for _, line := range strings.Split(strings.ReplaceAll(text, "\r", ""), "\n") {
		w.buf.WriteString(": ")
		w.buf.WriteString(line)
		w.buf.WriteByte('\n')
	}
	w.buf.WriteByte('\n')
	return w.emit()
}

// KeepAlive writes the ": ping" comment.
func (w *Writer) KeepAlive() error { return w.Comment("ping") }

// Flush flushes w's destination when it can.
func (w *Writer) Flush() error {
	if w.flush == nil {
		return nil
	}
	return w.flush()
}

func (w *Writer) emit() error {
	if _, err := w.w.Write(w.buf.Bytes()); err != nil {
		return fmt.Errorf("writing event: %w", err)
	}
	if w.manual {
		return nil
	}
	if err := w.Flush(); err != nil {
		return fmt.Errorf("flushing event: %w", err)
	}
	return nil
}

// Marshal encodes v as JSON the way the APIs send it: one line, with <, >
// and & left as they are (encoding/json would escape them, which is valid
// JSON but not what real servers send, and bloats code-heavy output).
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// DefaultMaxEventSize bounds one event's size when reading, so a broken or
// hostile upstream cannot make the reader buffer without end.
const DefaultMaxEventSize = 16 << 20

// ErrEventTooLarge is returned when an event exceeds the reader's limit.
var ErrEventTooLarge = errors.New("sse: event too large")

// Reader parses an event stream per the WHATWG EventSource rules: lines end
// in LF, CRLF or CR; a leading BOM is skipped; ":" lines are comments;
// "data" lines join with "\n"; a blank line dispatches; unknown fields are
// ignored; an event with no data is not dispatched.
type Reader struct {
	r       *bufio.Reader
	max     int
	lastID  string
	started bool
	pendCR  bool
}

// NewReader returns a Reader on r with DefaultMaxEventSize.
func NewReader(r io.Reader) *Reader { return NewReaderSize(r, DefaultMaxEventSize) }

// NewReaderSize returns a Reader whose events may be at most max bytes.
func NewReaderSize(r io.Reader, max int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, 8<<10), max: max}
}

// Next returns the next event. At the end of the stream it returns io.EOF;
// when the stream ends in the middle of an event (data read but no blank line
// to dispatch it) it returns io.ErrUnexpectedEOF, since a cut stream must not
// pass for a complete one.
func (r *Reader) Next() (Event, error) {
	var (
		ev      Event
		data    bytes.Buffer
		hasData bool
		partial bool
		size    int
	)
	for {
		line, err := r.readLine()
		if err != nil {
			if errors.Is(err, io.EOF) {
				if partial && len(line) == 0 {
					return Event{}, io.ErrUnexpectedEOF
				}
				if len(line) == 0 {
					return Event{}, io.EOF
				}
				// A last line without its terminator: process it, then
				// report the cut event.
				r.field(line, &ev, &data, &hasData)
				return Event{}, io.ErrUnexpectedEOF
			}
			return Event{}, err
		}
		size += len(line)
		if r.max > 0 && size > r.max {
			return Event{}, ErrEventTooLarge
		}
		if len(line) == 0 {
			if !hasData {
				// Per spec an event without data is dropped, its name
				// reset.
				ev = Event{}
				partial = false
				size = 0
				continue
			}
			ev.Data = data.String()
			ev.ID = r.lastID
			return ev, nil
		}
		if line[0] == ':' {
			continue // a comment (keep-alive)
		}
		partial = true
		r.field(line, &ev, &data, &hasData)
	}
}

func (r *Reader) field(line []byte, ev *Event, data *bytes.Buffer, hasData *bool) {
	name, value, found := bytes.Cut(line, []byte(":"))
	if found && len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "event":
		ev.Event = string(value)
	case "data":
		if *hasData {
			data.WriteByte('\n')
		}
		data.Write(value)
		*hasData = true
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			r.lastID = string(value)
		}
	case "retry":
		if n, err := strconv.Atoi(string(value)); err == nil && n >= 0 {
			ev.Retry = n
		}
	}
}

// readLine returns one line without its terminator (LF, CRLF or CR). At the
// end of input it returns what is left with io.EOF.
func (r *Reader) readLine() ([]byte, error) {
	var line []byte
	for {
		if !r.started {
			r.started = true
			// A UTF-8 BOM may open the stream.
			if bom, err := r.r.Peek(3); err == nil && bom[0] == 0xEF && bom[1] == 0xBB && bom[2] == 0xBF {
				_, _ = r.r.Discard(3)
			}
		}
		if r.r.Buffered() == 0 {
			if _, err := r.r.Peek(1); err != nil {
				return line, err
			}
		}
		// Scan what is buffered for the line's end instead of reading byte
		// by byte: this is the gateway's per-chunk hot path.
		buf, _ := r.r.Peek(r.r.Buffered())
		if r.pendCR {
			r.pendCR = false
			if buf[0] == '\n' {
				_, _ = r.r.Discard(1) // the LF of a CRLF
				continue
			}
		}
		i := bytes.IndexAny(buf, "\r\n")
		if i < 0 {
			line = append(line, buf...)
			_, _ = r.r.Discard(len(buf))
		} else {
			line = append(line, buf[:i]...)
			r.pendCR = buf[i] == '\r'
			_, _ = r.r.Discard(i + 1)
		}
		if r.max > 0 && len(line) > r.max {
			return nil, ErrEventTooLarge
		}
		if i >= 0 {
			return line, nil
		}
	}
}

// Buffered is how many bytes are read from the source but not yet parsed:
// when it is 0, the next event is not here yet, which is the moment a relay
// should flush what it wrote.
func (r *Reader) Buffered() int { return r.r.Buffered() }

// ReadAll reads every event of r until io.EOF.
func ReadAll(r io.Reader) ([]Event, error) {
	sr := NewReader(r)
	var out []Event
	for {
		ev, err := sr.Next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}
