package gateway

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
)

// At shutdown a client on a kept-alive connection is told to leave it with
// its next answer, so the drain ends as soon as the connection is gone,
// not by closing it under the client (which resets a request sent at that
// moment). Without "Connection: close" the connection would stay open and
// the drain would wait out its whole period.
func TestDrainAsksClientsToCloseTheirConnections(t *testing.T) {
	h := newHarness(t)
	srv := httptest.NewUnstartedServer(h.g.Handler(testr.New(t)))
	srv.Config.ConnState = h.g.conns.hook
	srv.Start()
	t.Cleanup(srv.Close)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)
	get := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer sk-alice")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusOK || resp.Close {
		t.Fatalf("before the drain: %d, close %v", resp.StatusCode, resp.Close)
	}
	if n := h.g.conns.open.Load(); n != 1 {
		t.Fatalf("%d connections open, want the kept-alive one", n)
	}
	done := make(chan struct{})
	go func() {
		h.g.conns.drain(context.Background(), time.Minute)
		close(done)
	}()
	for !h.g.conns.draining.Load() {
		time.Sleep(time.Millisecond)
	}
	if resp := get(); resp.StatusCode != http.StatusOK || !resp.Close {
		t.Fatalf("while draining: %d, close %v (want Connection: close)", resp.StatusCode, resp.Close)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the drain still waits with %d connections open", h.g.conns.open.Load())
	}
}

// A connection that stays silent is not waited for past the period.
func TestDrainEndsAfterItsPeriod(t *testing.T) {
	var c connTracker
	c.open.Store(1)
	done := make(chan struct{})
	go func() {
		c.drain(context.Background(), 50*time.Millisecond)
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the drain did not end after its period")
	}
}
