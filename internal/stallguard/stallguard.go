// Package stallguard bounds how long one write of an HTTP answer may
// block. A client that stops reading (its socket buffers full) would
// otherwise hold the handler's goroutine, and whatever the handler holds —
// an upstream connection, an inference sequence — for as long as it keeps
// the connection open. Before each write or flush the connection's write
// deadline is set Timeout ahead; once one fails, every later write fails
// at once, so ending the answer (an error event, the final flush, a
// keep-alive ticker) costs no further waits. net/http clears the deadline
// when the request is done, so a kept connection's next request starts
// afresh.
package stallguard

import (
	"errors"
	"net/http"
	"time"
)

// Chunk is the most bytes one write may carry under one deadline: a large
// answer to a slow reader is written piece by piece, each with the whole
// timeout, so the bound is on a stall, not on the answer's size.
const Chunk = 64 << 10

// ErrStalled is what writes return once one did not finish in time.
var ErrStalled = errors.New("the client stopped reading")

// Handler wraps every answer of h with Wrap. A timeout of 0 or less
// returns h.
func Handler(h http.Handler, timeout time.Duration) http.Handler {
	if timeout <= 0 {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(Wrap(w, timeout, time.Now), r)
	})
}

// Wrap returns w with a deadline on each write and flush, timeout after
// now() at the write. A writer that cannot set deadlines (a test
// recorder) is written to without one.
func Wrap(w http.ResponseWriter, timeout time.Duration, now func() time.Time) http.ResponseWriter {
	return &writer{ResponseWriter: w, rc: http.NewResponseController(w), timeout: timeout, now: now}
}

type writer struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	now     func() time.Time
	err     error
}

func (s *writer) arm() { _ = s.rc.SetWriteDeadline(s.now().Add(s.timeout)) }

func (s *writer) Write(p []byte) (int, error) {
	var n int
	for n < len(p) {
		if s.err != nil {
			return n, s.err
		}
		s.arm()
		k, err := s.ResponseWriter.Write(p[n:min(len(p), n+Chunk)])
		n += k
		if err != nil {
			s.fail(err)
		}
	}
	return n, s.err
}

// FlushError flushes under the same deadline; http.ResponseController
// (and so echo's Response.Flush) and the sse package use it.
func (s *writer) FlushError() error {
	if s.err != nil {
		return s.err
	}
	s.arm()
	if err := s.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.fail(err)
	}
	return s.err
}

// Flush is FlushError for callers that only know http.Flusher.
func (s *writer) Flush() { _ = s.FlushError() }

func (s *writer) fail(err error) {
	var t interface{ Timeout() bool }
	if errors.As(err, &t) && t.Timeout() {
		err = ErrStalled
	}
	s.err = err
}

// Unwrap lets http.ResponseController reach the connection.
func (s *writer) Unwrap() http.ResponseWriter { return s.ResponseWriter }
