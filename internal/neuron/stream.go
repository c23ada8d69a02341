package neuron

import (
	"net/http"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// streamer writes one SSE answer. Headers are committed lazily, by the first
// event or keep-alive, so an error found before then (a full queue, a
// prompt too long) still gets its proper status. While nothing has been
// sent for a keep-alive interval (the request is queued, or its prompt is
// being processed), a ": keep-alive" comment keeps proxies and clients from
// timing out.
type streamer struct {
	w        http.ResponseWriter
	sw       *sse.Writer
	interval time.Duration

	mu      sync.Mutex
	started bool
	last    time.Time
	err     error
	stop    chan struct{}
	stopped chan struct{}
}

func newStreamer(w http.ResponseWriter, interval time.Duration) *streamer {
	s := &streamer{w: w, sw: sse.NewWriter(w), interval: interval, last: time.Now(),
		stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.keepAlive()
	return s
}

func (s *streamer) keepAlive() {
	defer close(s.stopped)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.mu.Lock()
			if s.err == nil && time.Since(s.last) >= s.interval-s.interval/10 {
				s.startLocked()
				s.err = s.sw.Comment("keep-alive")
				s.last = time.Now()
			}
			s.mu.Unlock()
		}
	}
}

func (s *streamer) startLocked() {
	if s.started {
		return
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", sse.ContentType)
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no") // nginx: do not buffer the stream
	s.w.WriteHeader(http.StatusOK)
}

// send writes one JSON event. It returns the write error of a client that
// went away, which stops the generation.
func (s *streamer) send(v any) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return s.err
	}
	s.startLocked()
	s.err = s.sw.WriteJSON("", v)
	s.last = time.Now()
	return s.err
}

// done writes data: [DONE].
func (s *streamer) done() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.startLocked()
		s.err = s.sw.WriteDone()
	}
}

// fail reports err: as a JSON answer when nothing was sent yet, else as an
// error event that ends the stream (OpenAI's convention mid-stream).
func (s *streamer) fail(err error) {
	s.close()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started {
		writeError(s.w, err)
		return
	}
	if s.err == nil {
		s.err = s.sw.WriteJSON("", openai.AsError(err).Body())
	}
}

// close stops the keep-alives; it is idempotent.
func (s *streamer) close() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.stopped
}
