package gateway

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"time"
)

// Draining before shutdown.
//
// http.Server.Shutdown closes idle keep-alive connections at once. A client
// (or a TCP load balancer in front of the gateway, such as a Service) that
// sends its next request on such a connection at that moment gets a reset
// for a request the gateway never read, and most HTTP clients do not retry
// a POST. So on SIGTERM the gateway first drains: every response says
// "Connection: close", so each client leaves its connection after the
// answer it is getting and opens the next one elsewhere, and only once no
// connection is left, or DrainPeriod has passed, does Shutdown close what
// remains (connections that stayed silent the whole period). New
// connections are still served meanwhile: endpoint removal lags SIGTERM.

// connTracker counts the server's open client connections.
type connTracker struct {
	open     atomic.Int64
	draining atomic.Bool
}

// hook is an http.Server ConnState callback.
func (t *connTracker) hook(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		t.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		t.open.Add(-1)
	}
}

// drain starts draining and waits until no connection is open, period has
// passed or ctx ends.
func (t *connTracker) drain(ctx context.Context, period time.Duration) {
	t.draining.Store(true)
	if period <= 0 {
		return
	}
	deadline := time.NewTimer(period)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for t.open.Load() > 0 {
		select {
		case <-tick.C:
		case <-deadline.C:
			return
		case <-ctx.Done():
			return
		}
	}
}
