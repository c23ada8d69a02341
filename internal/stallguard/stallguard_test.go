package stallguard

import (
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestAStalledClientFailsTheWriteAndEveryLaterOne(t *testing.T) {
	type result struct {
		err, again error
		took       time.Duration
	}
	done := make(chan result, 1)
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		chunk := make([]byte, 1<<20)
		for {
			if _, err := w.Write(chunk); err != nil {
				t0 := time.Now()
				_, again := w.Write([]byte("x"))
				done <- result{err, again, time.Since(t0)}
				return
			}
		}
	}), 300*time.Millisecond))
	defer srv.Close()
	conn, err := net.Dial("tcp", strings.TrimPrefix(srv.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	// The client never reads.
	select {
	case r := <-done:
		if !errors.Is(r.err, ErrStalled) || !errors.Is(r.again, ErrStalled) {
			t.Fatalf("write errors %v, then %v; want ErrStalled twice", r.err, r.again)
		}
		if r.took > 100*time.Millisecond {
			t.Fatalf("the write after a stall took %s; it must fail at once", r.took)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the handler is still writing to a client that never reads")
	}
}

func TestAReadingClientGetsALargeAnswerWhole(t *testing.T) {
	body := strings.Repeat("y", 5<<20)
	srv := httptest.NewServer(Handler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if _, err := w.Write([]byte(body)); err != nil {
			t.Errorf("write: %v", err)
		}
		http.NewResponseController(w).Flush()
	}), time.Second))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var got strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		got.Write(buf[:n])
		if err != nil {
			break
		}
	}
	if got.Len() != len(body) {
		t.Fatalf("got %d bytes, want %d", got.Len(), len(body))
	}
}

func TestWithoutDeadlinesItStillWrites(t *testing.T) {
	rec := httptest.NewRecorder()
	w := Wrap(rec, time.Second, time.Now)
	if _, err := w.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := http.NewResponseController(w).Flush(); err != nil {
		t.Fatal(err)
	}
	if rec.Body.String() != "hello" || !rec.Flushed {
		t.Fatalf("recorder got %q, flushed %v", rec.Body.String(), rec.Flushed)
	}
}
