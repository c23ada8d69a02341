// Package jsonrpc is a JSON-RPC 2.0 peer over newline-delimited JSON, the
// transport of the Agent Client Protocol: one message per line in each
// direction, requests both ways, and `$/cancel_request` to abort a request
// in flight.
//
// Incoming requests are handled in the read loop, one after the other, so
// that a handler sees messages in the order they were sent (a cancel
// notification can never overtake the prompt it cancels). A handler that
// needs to wait — for the model, or for a request of its own to the peer —
// returns [Async] and continues on its own goroutine.
package jsonrpc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
)

// Standard JSON-RPC error codes, and the one ACP uses for a cancelled request.
const (
	CodeParseError       = -32700
	CodeInvalidRequest   = -32600
	CodeMethodNotFound   = -32601
	CodeInvalidParams    = -32602
	CodeInternalError    = -32603
	CodeRequestCancelled = -32800
)

// MethodCancelRequest is the notification that cancels a request by id.
const MethodCancelRequest = "$/cancel_request"

// MaxLineBytes bounds one message; a longer line is answered with a parse
// error and skipped, so a runaway peer cannot exhaust memory.
const MaxLineBytes = 64 << 20

// Error is a JSON-RPC error object; handlers return it to choose the code.
type Error struct {
	Code    int             `json:"code"`
	Message string          `json:"message"`
	Data    json.RawMessage `json:"data,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("jsonrpc error %d: %s", e.Code, e.Message) }

// Errorf makes an *Error with a formatted message.
func Errorf(code int, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrMethodNotFound makes the error for an unknown method.
func ErrMethodNotFound(method string) *Error {
	return Errorf(CodeMethodNotFound, "method not found: %s", method)
}

// Message is any JSON-RPC message: a request (ID and Method), a
// notification (Method only) or a response (ID and Result or Error).
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   *Error          `json:"error,omitempty"`
}

// IsRequest reports whether m expects a response.
func (m *Message) IsRequest() bool { return m.Method != "" && len(m.ID) > 0 }

// IsNotification reports whether m is a notification.
func (m *Message) IsNotification() bool { return m.Method != "" && len(m.ID) == 0 }

// IsResponse reports whether m answers one of our requests.
func (m *Message) IsResponse() bool { return m.Method == "" && len(m.ID) > 0 }

// Parse decodes one line. A line that is not JSON is a parse error; JSON
// that is not a JSON-RPC 2.0 message is an invalid request. The returned
// message carries the id when one could be read, so the error can be
// answered to the right request.
func Parse(line []byte) (*Message, *Error) {
	var m Message
	if err := json.Unmarshal(line, &m); err != nil {
		return nil, Errorf(CodeParseError, "parse error: %v", err)
	}
	if len(m.ID) > 0 && !validID(m.ID) {
		m.ID = nil
		return &m, Errorf(CodeInvalidRequest, "invalid request: id must be a string, a number or null")
	}
	if m.JSONRPC != "2.0" {
		return &m, Errorf(CodeInvalidRequest, "invalid request: jsonrpc must be \"2.0\"")
	}
	if m.Method == "" && len(m.ID) == 0 {
		return &m, Errorf(CodeInvalidRequest, "invalid request: no method and no id")
	}
	if m.Method == "" && m.Result == nil && m.Error == nil {
		return &m, Errorf(CodeInvalidRequest, "invalid response: neither result nor error")
	}
	return &m, nil
}

func validID(id json.RawMessage) bool {
	id = bytes.TrimSpace(id)
	if len(id) == 0 {
		return false
	}
	switch id[0] {
	case '"':
		var s string
		return json.Unmarshal(id, &s) == nil
	case 'n':
		return string(id) == "null"
	default:
		var n json.Number
		return json.Unmarshal(id, &n) == nil
	}
}

// LineReader splits a stream into messages, one per line, tolerating
// blank lines and CRLF, and skipping (with an error) lines over the limit.
type LineReader struct {
	r   *bufio.Reader
	max int
}

// NewLineReader reads lines of at most max bytes (MaxLineBytes when 0).
func NewLineReader(r io.Reader, max int) *LineReader {
	if max <= 0 {
		max = MaxLineBytes
	}
	return &LineReader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// ErrLineTooLong is returned (once per such line) for an over-long line.
var ErrLineTooLong = errors.New("message line too long")

// Next returns the next non-blank line without its terminator. It returns
// io.EOF at the end of the stream; a final line without a newline counts.
func (l *LineReader) Next() ([]byte, error) {
	for {
		var buf []byte
		tooLong := false
		for {
			chunk, err := l.r.ReadSlice('\n')
			if !tooLong {
				if len(buf)+len(chunk) > l.max+2 {
					tooLong, buf = true, nil
				} else {
					buf = append(buf, chunk...)
				}
			}
			if errors.Is(err, bufio.ErrBufferFull) {
				continue
			}
			if err != nil && (err != io.EOF || (len(buf) == 0 && !tooLong)) {
				return nil, err
			}
			break
		}
		if tooLong {
			return nil, ErrLineTooLong
		}
		line := bytes.TrimRight(buf, "\r\n")
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		return line, nil
	}
}

// Handler answers one incoming request or notification. For a
// notification the result is ignored. Returning an *Error chooses the
// error code; any other error is an internal error.
type Handler func(ctx context.Context, method string, params json.RawMessage) (any, error)

// Async, returned by a Handler, finishes the request on its own goroutine
// so the read loop can go on (to read a cancel, or the answer to a request
// the handler makes of the peer).
type Async func() (any, error)

// Then, returned as a result, answers with Result and then runs After:
// for notifications that must follow the answer (the client learns a new
// session's id from the answer, so updates about it come after).
type Then struct {
	Result any
	After  func()
}

// Conn is one JSON-RPC peer.
type Conn struct {
	lines   *LineReader
	w       io.Writer
	handler Handler
	log     *slog.Logger

	writeMu sync.Mutex
	nextID  atomic.Int64

	mu       sync.Mutex
	pending  map[string]chan *Message
	inflight map[string]context.CancelFunc
	closed   bool
	wg       sync.WaitGroup
}

// NewConn makes a peer that reads r and writes w. Logs go to log.
func NewConn(r io.Reader, w io.Writer, h Handler, log *slog.Logger) *Conn {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Conn{
		lines:    NewLineReader(r, 0),
		w:        w,
		handler:  h,
		log:      log,
		pending:  map[string]chan *Message{},
		inflight: map[string]context.CancelFunc{},
	}
}

// ErrClosed is returned by Call once the peer has gone.
var ErrClosed = errors.New("connection closed")

// Serve reads until the stream ends or ctx is done, then cancels requests
// in flight, waits for their handlers and returns.
func (c *Conn) Serve(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Lines are read on their own goroutine so that Serve can return when
	// ctx ends even while the peer sends nothing.
	type read struct {
		line []byte
		err  error
	}
	lines := make(chan read)
	next := make(chan struct{})
	go func() {
		for {
			line, err := c.lines.Next()
			select {
			case lines <- read{line, err}:
			case <-ctx.Done():
				return
			}
			if err != nil && !errors.Is(err, ErrLineTooLong) {
				return
			}
			select {
			case <-next:
			case <-ctx.Done():
				return
			}
		}
	}()
	var err error
loop:
	for {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		case r := <-lines:
			if errors.Is(r.err, ErrLineTooLong) {
				c.log.Warn("Dropping an over-long message line")
				c.reply(json.RawMessage("null"), nil, Errorf(CodeParseError, "parse error: line longer than %d bytes", c.lines.max))
				next <- struct{}{}
				continue
			}
			if r.err != nil {
				err = r.err
				break loop
			}
			c.dispatch(ctx, r.line)
			next <- struct{}{}
		}
	}
	c.mu.Lock()
	c.closed = true
	for id, ch := range c.pending {
		close(ch)
		delete(c.pending, id)
	}
	c.mu.Unlock()
	cancel()
	c.wg.Wait()
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

func (c *Conn) dispatch(ctx context.Context, line []byte) {
	m, perr := Parse(line)
	if perr != nil {
		c.log.Warn("Bad message", "error", perr.Message)
		id := json.RawMessage("null")
		if m != nil && len(m.ID) > 0 && m.Method != "" {
			id = m.ID
		}
		if m == nil || m.Method != "" || perr.Code == CodeParseError || len(m.ID) == 0 {
			c.reply(id, nil, perr)
		}
		return
	}
	switch {
	case m.IsResponse():
		key := string(bytes.TrimSpace(m.ID))
		c.mu.Lock()
		ch := c.pending[key]
		delete(c.pending, key)
		c.mu.Unlock()
		if ch != nil {
			ch <- m
		}
	case m.IsNotification():
		if m.Method == MethodCancelRequest {
			var p struct {
				RequestID json.RawMessage `json:"requestId"`
			}
			if json.Unmarshal(m.Params, &p) == nil {
				c.mu.Lock()
				if cancel := c.inflight[string(bytes.TrimSpace(p.RequestID))]; cancel != nil {
					cancel()
				}
				c.mu.Unlock()
			}
			return
		}
		if _, err := c.call(ctx, m.Method, m.Params); err != nil {
			c.log.Warn("Notification failed", "method", m.Method, "error", err)
		}
	default:
		key := string(bytes.TrimSpace(m.ID))
		rctx, cancel := context.WithCancel(ctx)
		c.mu.Lock()
		c.inflight[key] = cancel
		c.mu.Unlock()
		finish := func(res any, err error) {
			c.mu.Lock()
			delete(c.inflight, key)
			c.mu.Unlock()
			cancel()
			c.respond(m.ID, res, err, rctx)
		}
		res, err := c.call(rctx, m.Method, m.Params)
		if async, ok := res.(Async); ok && err == nil {
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				var res any
				var err error
				func() {
					defer func() {
						if r := recover(); r != nil {
							err = Errorf(CodeInternalError, "internal error: %v", r)
						}
					}()
					res, err = async()
				}()
				finish(res, err)
			}()
			return
		}
		finish(res, err)
	}
}

// call runs the handler, turning a panic into an internal error so that
// one bad request never takes the agent down.
func (c *Conn) call(ctx context.Context, method string, params json.RawMessage) (res any, err error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("Handler panicked", "method", method, "panic", r)
			res, err = nil, Errorf(CodeInternalError, "internal error: %v", r)
		}
	}()
	return c.handler(ctx, method, params)
}

func (c *Conn) respond(id json.RawMessage, res any, err error, ctx context.Context) {
	if err != nil {
		var rpcErr *Error
		switch {
		case errors.As(err, &rpcErr):
		case ctx.Err() != nil && errors.Is(err, context.Canceled):
			rpcErr = Errorf(CodeRequestCancelled, "request cancelled")
		default:
			rpcErr = Errorf(CodeInternalError, "%v", err)
		}
		c.reply(id, nil, rpcErr)
		return
	}
	if t, ok := res.(Then); ok {
		c.reply(id, t.Result, nil)
		if t.After != nil {
			t.After()
		}
		return
	}
	c.reply(id, res, nil)
}

func (c *Conn) reply(id json.RawMessage, res any, rpcErr *Error) {
	out := struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Result  any             `json:"result,omitempty"`
		Error   *Error          `json:"error,omitempty"`
	}{JSONRPC: "2.0", ID: id, Error: rpcErr}
	if rpcErr == nil {
		if res == nil {
			res = struct{}{}
		}
		out.Result = res
	}
	if err := c.write(out); err != nil {
		c.log.Warn("Writing a response", "error", err)
	}
}

func (c *Conn) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encoding a message: %w", err)
	}
	b = append(b, '\n')
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	_, err = c.w.Write(b)
	return err
}

// Notify sends a notification.
func (c *Conn) Notify(method string, params any) error {
	return c.write(struct {
		JSONRPC string `json:"jsonrpc"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
	}{"2.0", method, params})
}

// Call sends a request and waits for its answer, decoding the result into
// result (when non-nil). When ctx ends first the peer is told with
// `$/cancel_request` and ctx's error is returned. Call must not be used
// from a handler's synchronous part: the read loop delivers the answer.
func (c *Conn) Call(ctx context.Context, method string, params, result any) error {
	id := c.nextID.Add(1)
	key := strconv.FormatInt(id, 10)
	ch := make(chan *Message, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.pending[key] = ch
	c.mu.Unlock()
	err := c.write(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      int64  `json:"id"`
		Method  string `json:"method"`
		Params  any    `json:"params,omitempty"`
	}{"2.0", id, method, params})
	if err != nil {
		c.forget(key)
		return err
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return ErrClosed
		}
		if m.Error != nil {
			return m.Error
		}
		if result != nil && len(m.Result) > 0 {
			if err := json.Unmarshal(m.Result, result); err != nil {
				return fmt.Errorf("decoding the answer to %s: %w", method, err)
			}
		}
		return nil
	case <-ctx.Done():
		c.forget(key)
		_ = c.Notify(MethodCancelRequest, map[string]any{"requestId": id})
		return ctx.Err()
	}
}

func (c *Conn) forget(key string) {
	c.mu.Lock()
	delete(c.pending, key)
	c.mu.Unlock()
}
