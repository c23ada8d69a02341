package gateway

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

func TestPrefixBatchRoundTrip(t *testing.T) {
	var buf []byte
	buf = appendPrefixRecord(buf, "http://10.0.0.1:8231", []uint64{1, 2, 3})
	buf = appendPrefixRecord(buf, "http://10.0.0.2:8231", []uint64{1<<63 + 5})
	if want := len(prefixBatchMagic) + prefixRecordSize("http://10.0.0.1:8231", []uint64{1, 2, 3}) + prefixRecordSize("http://10.0.0.2:8231", []uint64{0}); len(buf) != want {
		t.Fatalf("batch of %d bytes, want %d", len(buf), want)
	}
	recs, err := decodePrefixBatch(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []prefixRecord{{"http://10.0.0.1:8231", []uint64{1, 2, 3}}, {"http://10.0.0.2:8231", []uint64{1<<63 + 5}}}
	if len(recs) != len(want) {
		t.Fatalf("got %v", recs)
	}
	for i := range want {
		if recs[i].endpoint != want[i].endpoint || !slices.Equal(recs[i].keys, want[i].keys) {
			t.Fatalf("record %d: got %v, want %v", i, recs[i], want[i])
		}
	}
	if recs, err := decodePrefixBatch([]byte(prefixBatchMagic)); err != nil || len(recs) != 0 {
		t.Fatalf("an empty batch: %v, %v", recs, err)
	}

	good := appendPrefixRecord(nil, "http://a", []uint64{9, 10})
	tooMany := appendPrefixRecord(nil, "http://a", make([]uint64, MaxPrefixKeys+1))
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no magic":           {[]byte("CPX2" + string(good[4:])), "must start with"},
		"empty":              {nil, "must start with"},
		"cut in a length":    {good[:5], "truncated endpoint length"},
		"cut in an endpoint": {good[:8], "truncated endpoint"},
		"cut in the keys":    {good[:len(good)-3], "truncated keys"},
		"empty endpoint":     {append([]byte(prefixBatchMagic), 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0), "endpoint of 0 bytes"},
		"no keys":            {append([]byte(prefixBatchMagic), 1, 0, 'x', 0, 0), "0 keys"},
		"too many keys":      {tooMany, "65 keys"},
		"trailing byte":      {append(slices.Clone(good), 7), "truncated endpoint length"},
	} {
		if recs, err := decodePrefixBatch(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) || recs != nil {
			t.Errorf("%s: got %v, %v; want an error saying %q and nothing decoded", name, recs, err, tc.want)
		}
	}
}

// value reads a counter or gauge.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Counter != nil {
		return m.Counter.GetValue()
	}
	return m.Gauge.GetValue()
}

// peerGateway is one gateway replica's balancer and prefix sync, serving
// its peer endpoint over real HTTP.
type peerGateway struct {
	b    *Balancer
	ps   *prefixSync
	reg  *prometheus.Registry
	srv  *httptest.Server
	addr string
}

func newPeerGateway(t *testing.T, token string) *peerGateway {
	t.Helper()
	g := &peerGateway{b: NewBalancer(), reg: prometheus.NewRegistry()}
	g.ps = newPrefixSync(g.b, neuronapi.StaticToken(token), nil, 10*time.Millisecond, g.reg)
	g.srv = httptest.NewServer(g.ps)
	t.Cleanup(g.srv.Close)
	g.addr = strings.TrimPrefix(g.srv.URL, "http://")
	return g
}

func (g *peerGateway) sent() float64 {
	return value(g.ps.metrics.records.WithLabelValues("sent"))
}

func (g *peerGateway) received() float64 {
	return value(g.ps.metrics.records.WithLabelValues("received"))
}

// What one gateway replica routed, the other routes alike: a request
// whose prefix replica A sent away from its hash home (that replica was
// busy) goes to the same replica on B, where without sharing it would go
// home.
func TestPrefixSyncSharesRoutedPrefixes(t *testing.T) {
	a, b := newPeerGateway(t, "tok"), newPeerGateway(t, "tok")
	a.ps.specs, b.ps.specs = []string{b.addr}, []string{a.addr}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go a.ps.run(ctx)
	go b.ps.run(ctx)

	rs := reps(4)
	prefix := []uint64{101, 102, 103}
	home, rel, _ := NewBalancer().Pick(rs, prefix, nil)
	rel()
	// Three requests without a prefix held on home on A: the prefix must
	// go elsewhere there.
	others := []string{}
	for _, r := range rs {
		if r != home {
			others = append(others, r.Endpoint)
		}
	}
	var holds []func()
	for range 3 {
		r, rel, _ := a.b.Pick(rs, nil, others)
		if r != home {
			t.Fatalf("the hold went to %s, not %s", r.Node, home.Node)
		}
		holds = append(holds, rel)
	}
	away, rel, _ := a.b.Pick(rs, prefix, nil)
	rel()
	for _, h := range holds {
		h()
	}
	if away == home {
		t.Fatalf("A sent the prefix home (%s) although it was busy", home.Node)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.received() < 1 {
		if time.Now().After(deadline) {
			t.Fatalf("B received nothing in 10 s (A sent %v, failures %v)", a.sent(), value(a.ps.metrics.failures))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A longer prompt of the same conversation, first seen by B.
	got, rel, _ := b.b.Pick(rs, append(slices.Clone(prefix), 104), nil)
	rel()
	if got != away {
		t.Fatalf("B sent the conversation to %s; A had sent it to %s (hash home %s)", got.Node, away.Node, home.Node)
	}
	// B's own choice went back to A: nothing echoes, so A received exactly
	// B's one record.
	for a.received() < 1 {
		if time.Now().After(deadline) {
			t.Fatal("A received nothing from B")
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if a.received() != 1 || b.received() != 1 {
		t.Fatalf("received A %v, B %v; want 1 each (each replica's own choice, no echo)", a.received(), b.received())
	}
	if v := value(a.ps.metrics.peers); v != 1 {
		t.Fatalf("A counts %v peers, want 1", v)
	}
}

func TestPrefixSyncRefusesBadBatches(t *testing.T) {
	g := newPeerGateway(t, "tok")
	good := appendPrefixRecord(nil, "http://n0", []uint64{5})
	post := func(method, token string, body []byte) (int, string) {
		req, _ := http.NewRequest(method, g.srv.URL+PathPeerPrefixes, bytes.NewReader(body))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var msg bytes.Buffer
		_, _ = msg.ReadFrom(resp.Body)
		return resp.StatusCode, msg.String()
	}
	for name, tc := range map[string]struct {
		method, token string
		body          []byte
		code          int
		msg           string
	}{
		"no token":    {http.MethodPost, "", good, http.StatusUnauthorized, "neuron token"},
		"wrong token": {http.MethodPost, "nope", good, http.StatusUnauthorized, "neuron token"},
		"GET":         {http.MethodGet, "tok", nil, http.StatusMethodNotAllowed, "only POST"},
		"not a batch": {http.MethodPost, "tok", []byte(`{"keys":[1]}`), http.StatusBadRequest, "not a prefix batch"},
		"truncated":   {http.MethodPost, "tok", good[:len(good)-1], http.StatusBadRequest, "truncated keys"},
		"too large":   {http.MethodPost, "tok", make([]byte, maxPrefixBatch+1), http.StatusRequestEntityTooLarge, "at most"},
	} {
		code, msg := post(tc.method, tc.token, tc.body)
		if code != tc.code || !strings.Contains(msg, tc.msg) {
			t.Errorf("%s: %d %q, want %d and %q", name, code, msg, tc.code, tc.msg)
		}
	}
	if g.received() != 0 || len(g.b.recent) != 0 {
		t.Fatalf("refused batches were learned: %v received, table %v", g.received(), g.b.recent)
	}
	if code, msg := post(http.MethodPost, "tok", good); code != http.StatusNoContent {
		t.Fatalf("a good batch: %d %q", code, msg)
	}
	if ep, ok := g.b.lookup(5); !ok || ep != "http://n0" || g.received() != 1 {
		t.Fatalf("a good batch was not learned: %q %v, received %v", ep, ok, g.received())
	}
}

// A replica finds itself among the resolved peers (a headless Service
// lists every replica) and stops sending to itself; a failed lookup
// keeps the addresses it had.
func TestPrefixSyncFindsItselfAndKeepsPeersOnLookupErrors(t *testing.T) {
	self, other := newPeerGateway(t, ""), newPeerGateway(t, "")
	_, selfPort, _ := net.SplitHostPort(self.addr)
	_, otherPort, _ := net.SplitHostPort(other.addr)
	// Both replicas are "gateway-peers" at their own ports here, as in
	// the chart they are at one port on their own addresses.
	self.ps.specs = []string{"gateway-peers:" + selfPort, "gateway-peers:" + otherPort}
	fail := false
	self.ps.lookup = func(_ context.Context, host string) ([]string, error) {
		if host != "gateway-peers" {
			t.Errorf("looked up %q", host)
		}
		if fail {
			return nil, errors.New("no such host")
		}
		return []string{"127.0.0.1"}, nil
	}
	ctx := t.Context()
	self.ps.resolve(ctx)
	if got := self.ps.peers(); len(got) != 2 {
		t.Fatalf("resolved %v, want both replicas", got)
	}
	self.ps.remembered([]uint64{1, 2}, "http://n1")
	self.ps.flush(ctx)
	if got := self.ps.peers(); !slices.Equal(got, []string{"127.0.0.1:" + otherPort}) {
		t.Fatalf("after one batch the peers are %v, want only the other replica", got)
	}
	if other.received() != 1 || self.received() != 0 {
		t.Fatalf("received: other %v, self %v", other.received(), self.received())
	}
	fail = true
	self.ps.resolve(ctx)
	self.ps.remembered([]uint64{3}, "http://n1")
	self.ps.flush(ctx)
	if other.received() != 2 {
		t.Fatalf("a failed lookup cut the sharing: other received %v", other.received())
	}
	if v := value(self.ps.metrics.failures); v != 1 {
		t.Fatalf("failures %v, want 1 (the batch to itself)", v)
	}
}

// A full pending batch drops what does not fit and counts it.
func TestPrefixSyncBoundsThePendingBatch(t *testing.T) {
	g := newPeerGateway(t, "")
	keys := make([]uint64, MaxPrefixKeys)
	n := 0
	for value(g.ps.metrics.dropped) == 0 {
		g.ps.remembered(keys, "http://n0")
		n++
		if n > maxPrefixBatch {
			t.Fatal("never dropped")
		}
	}
	if len(g.ps.out) > maxPrefixBatch {
		t.Fatalf("pending batch of %d bytes, bound %d", len(g.ps.out), maxPrefixBatch)
	}
	if _, err := decodePrefixBatch(g.ps.out); err != nil {
		t.Fatalf("the bounded batch does not decode: %v", err)
	}
}
