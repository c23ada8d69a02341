package neuronapi

import (
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestClientRetriesOnceWithTheFallbackToken: a neuron that still has the
// old token refuses the new one; the client retries with the old one and
// the call succeeds, without spending one of its attempts.
func TestClientRetriesOnceWithTheFallbackToken(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	accept := "old"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+accept {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":{"message":"Incorrect bearer token.","type":"authentication_error","code":"invalid_api_key"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"models":[]}`))
	}))
	defer srv.Close()

	p := filepath.Join(t.TempDir(), "token")
	writeToken(t, p, "old")
	clk := &fakeNow{t: time.Now()}
	ts, err := NewTokenSource(p, "", TokenOptions{Recheck: time.Second, Grace: time.Minute, Now: clk.now})
	if err != nil {
		t.Fatal(err)
	}
	c := NewClient("")
	c.Tokens, c.Attempts = ts, 1
	writeToken(t, p, "new")
	clk.step(time.Second)
	if _, err := c.Models(context.Background(), srv.URL); err != nil {
		t.Fatalf("call during rotation: %v", err)
	}
	if len(seen) != 2 || seen[0] != "Bearer new" || seen[1] != "Bearer old" {
		t.Fatalf("tokens sent: %q", seen)
	}
	// Once the grace has passed there is nothing to fall back to: the
	// refusal is the caller's to see.
	clk.step(time.Minute)
	seen = nil
	if _, err := c.Models(context.Background(), srv.URL); err == nil {
		t.Fatal("a refused token after the grace period succeeded")
	}
	if len(seen) != 1 {
		t.Fatalf("tokens sent after the grace: %q", seen)
	}
}
