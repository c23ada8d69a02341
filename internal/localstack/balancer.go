package localstack

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"
)

// balancer is a loopback TCP load balancer in front of the gateway
// replicas: each new connection goes to the next replica in rotation that
// accepts it (round robin), as a Service's virtual IP does with a
// Deployment's ready endpoints. A connection stays with its replica until
// either side closes it; taking a replica out of rotation affects only new
// connections, as removing an endpoint does.
type balancer struct {
	ln net.Listener

	mu       sync.Mutex
	backends []*lbBackend
	next     int
	conns    map[net.Conn]struct{}
	closed   bool
	wg       sync.WaitGroup
}

type lbBackend struct {
	name, addr string
	in         bool
}

func newBalancer(addr string) (*balancer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &balancer{ln: ln, conns: map[net.Conn]struct{}{}}
	b.wg.Add(1)
	go b.serve()
	return b, nil
}

func (b *balancer) addr() string { return b.ln.Addr().String() }

// set puts a backend in rotation or takes it out (adding it if new).
func (b *balancer) set(name, addr string, in bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, be := range b.backends {
		if be.name == name {
			be.addr, be.in = addr, in
			return
		}
	}
	b.backends = append(b.backends, &lbBackend{name: name, addr: addr, in: in})
}

// candidates lists the backends in rotation, starting after the last one
// picked.
func (b *balancer) candidates() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	n := len(b.backends)
	for i := range n {
		be := b.backends[(b.next+i)%n]
		if be.in {
			out = append(out, be.addr)
		}
	}
	if n > 0 {
		b.next = (b.next + 1) % n
	}
	return out
}

func (b *balancer) track(c net.Conn, add bool) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if add {
		if b.closed {
			return false
		}
		b.conns[c] = struct{}{}
	} else {
		delete(b.conns, c)
	}
	return true
}

func (b *balancer) serve() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		b.wg.Add(1)
		go b.relay(c)
	}
}

// relay dials the first backend in rotation that accepts, then copies both
// ways; a client with no backend to go to is closed, as a Service with no
// endpoints refuses it.
func (b *balancer) relay(client net.Conn) {
	defer b.wg.Done()
	if !b.track(client, true) {
		_ = client.Close()
		return
	}
	defer b.track(client, false)
	defer func() { _ = client.Close() }()
	var backend net.Conn
	for _, addr := range b.candidates() {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			backend = c
			break
		}
	}
	if backend == nil {
		return
	}
	if !b.track(backend, true) {
		_ = backend.Close()
		return
	}
	defer b.track(backend, false)
	defer func() { _ = backend.Close() }()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		// Pass the end of one direction on, so each side sees the other
		// close (or reset) as it would without the balancer in between.
		if tc, ok := dst.(*net.TCPConn); ok {
			if err != nil {
				_ = tc.SetLinger(0)
				_ = tc.Close()
			} else {
				_ = tc.CloseWrite()
			}
		}
		done <- struct{}{}
	}
	go pipe(backend, client)
	go pipe(client, backend)
	<-done
	<-done
}

// close stops accepting and cuts every relayed connection.
func (b *balancer) close() {
	_ = b.ln.Close()
	b.mu.Lock()
	b.closed = true
	for c := range b.conns {
		_ = c.Close()
	}
	b.mu.Unlock()
	b.wg.Wait()
}
