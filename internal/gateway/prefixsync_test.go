package gateway

import (
	"bytes"
	"context"
	"errors"
	"maps"
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
	buf = appendLoadRecord(buf, "http://10.0.0.1:8231", Load{InFlight: 7, Prefill: 70000})
	buf = appendLoadRecord(buf, "http://10.0.0.3:8231", Load{})
	got, err := decodePrefixBatch(buf)
	if err != nil {
		t.Fatal(err)
	}
	want := []prefixRecord{{"http://10.0.0.1:8231", []uint64{1, 2, 3}}, {"http://10.0.0.2:8231", []uint64{1<<63 + 5}}}
	if len(got.prefixes) != len(want) {
		t.Fatalf("got %v", got.prefixes)
	}
	for i := range want {
		if got.prefixes[i].endpoint != want[i].endpoint || !slices.Equal(got.prefixes[i].keys, want[i].keys) {
			t.Fatalf("record %d: got %v, want %v", i, got.prefixes[i], want[i])
		}
	}
	if !maps.Equal(got.load, map[string]Load{"http://10.0.0.1:8231": {InFlight: 7, Prefill: 70000}, "http://10.0.0.3:8231": {}}) {
		t.Fatalf("load %v", got.load)
	}
	// A replica not yet upgraded sends CPX2: its load records have no
	// prefill, and are read as such.
	v2 := []byte(prefixBatchMagicV2)
	v2 = append(v2, appendPrefixRecord(nil, "http://a", []uint64{4})[len(prefixBatchMagic):]...)
	v2 = append(v2, 'L', 1, 0, 'b', 5, 0, 0, 0)
	if got, err := decodePrefixBatch(v2); err != nil || len(got.prefixes) != 1 || !maps.Equal(got.load, map[string]Load{"b": {InFlight: 5}}) {
		t.Fatalf("a CPX2 batch: %+v, %v", got, err)
	}
	if got, err := decodePrefixBatch([]byte(prefixBatchMagic)); err != nil || len(got.prefixes) != 0 || len(got.load) != 0 {
		t.Fatalf("an empty batch: %v, %v", got, err)
	}

	good := appendPrefixRecord(nil, "http://a", []uint64{9, 10})
	load := appendLoadRecord(nil, "http://a", Load{InFlight: 3, Prefill: 9})
	tooMany := appendPrefixRecord(nil, "http://a", make([]uint64, MaxPrefixKeys+1))
	head := func(b ...byte) []byte { return append([]byte(prefixBatchMagic), b...) }
	for name, tc := range map[string]struct {
		data []byte
		want string
	}{
		"no magic":           {[]byte("CPX1" + string(good[4:])), "must start with"},
		"empty":              {nil, "must start with"},
		"cut in a head":      {good[:6], "truncated head"},
		"cut in an endpoint": {good[:9], "truncated endpoint"},
		"cut in a count":     {good[:len(prefixBatchMagic)+3+8+1], "truncated key count"},
		"cut in the keys":    {good[:len(good)-3], "truncated keys"},
		"cut in a load":      {load[:len(load)-1], "truncated load"},
		"unknown kind":       {head('X', 1, 0, 'x'), "unknown kind"},
		"empty endpoint":     {head('P', 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0), "endpoint of 0 bytes"},
		"no keys":            {head('P', 1, 0, 'x', 0, 0), "0 keys"},
		"too many keys":      {tooMany, "65 keys"},
		"too large a load":   {head('L', 1, 0, 'x', 0xff, 0xff, 0xff, 0x7f, 0, 0, 0, 0), "requests in flight"},
		"too much prefill":   {head('L', 1, 0, 'x', 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff), "awaiting prefill"},
		"trailing byte":      {append(slices.Clone(good), 'P'), "truncated head"},
	} {
		if got, err := decodePrefixBatch(tc.data); err == nil || !strings.Contains(err.Error(), tc.want) || got != nil {
			t.Errorf("%s: got %v, %v; want an error saying %q and nothing decoded", name, got, err, tc.want)
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
	prefix := keys(101, 102, 103)
	home := pickOnce(NewBalancer(), rs, prefix)
	// Three requests without a prefix held on home on A: the prefix must
	// go elsewhere there.
	others := []string{}
	for _, r := range rs {
		if r != home {
			others = append(others, r.Endpoint)
		}
	}
	var holds []*Lease
	for range 3 {
		r, l, _ := a.b.Pick(rs, Prompt{}, others)
		if r != home {
			t.Fatalf("the hold went to %s, not %s", r.Node, home.Node)
		}
		holds = append(holds, l)
	}
	away := pickOnce(a.b, rs, prefix)
	for _, h := range holds {
		h.Release()
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
	got := pickOnce(b.b, rs, keys(101, 102, 103, 104))
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
		if method != "anonymous" { // a peer that does not say who it is
			req.Header.Set(headerGatewayInstance, "peer-x")
		} else {
			req.Method = http.MethodPost
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
		"no instance": {"anonymous", "tok", good, http.StatusBadRequest, "needs its sender's"},
		"not a batch": {http.MethodPost, "tok", []byte(`{"keys":[1]}`), http.StatusBadRequest, "not a prefix batch"},
		"truncated":   {http.MethodPost, "tok", good[:len(good)-1], http.StatusBadRequest, "truncated keys"},
		"too large":   {http.MethodPost, "tok", make([]byte, maxPrefixBatch+maxLoadBytes+1), http.StatusRequestEntityTooLarge, "at most"},
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

// Each replica counts the others' requests in flight and prompts awaiting
// prefill with its own, until their reports stop coming.
func TestPrefixSyncSharesRequestsInFlight(t *testing.T) {
	a, b := newPeerGateway(t, ""), newPeerGateway(t, "")
	a.ps.specs = []string{b.addr}
	ctx := t.Context()
	a.ps.resolve(ctx)
	rs := reps(4)
	only0 := []string{rs[1].Endpoint, rs[2].Endpoint, rs[3].Endpoint}
	var holds []*Lease
	for range 3 {
		_, l, _ := a.b.Pick(rs, Prompt{}, only0)
		holds = append(holds, l)
	}
	a.ps.flush(ctx)
	if got := pickOnce(b.b, rs, Prompt{}); got == rs[0] {
		t.Fatal("B sent a request to the replica A holds 3 on, with 3 idle ones")
	}
	for _, h := range holds {
		h.Release()
	}
	a.ps.flush(ctx)
	if got := pickOnce(b.b, rs, Prompt{}); got != rs[0] {
		t.Fatalf("B went to %s after A released everything; want %s (least loaded, first)", got.Node, rs[0].Node)
	}
	// One request of A's on each replica; the one on rs[0] is a long
	// prompt still in prefill: B sends its next request elsewhere, until
	// A says that prompt's first token came.
	holds = holds[:0]
	for i, r := range rs {
		p := Prompt{}
		if i == 0 {
			p.Bytes = 32 * PrefixChunk
		}
		_, l, _ := a.b.Pick([]Replica{r}, p, nil)
		if i > 0 {
			l.Started()
		}
		holds = append(holds, l)
	}
	a.ps.flush(ctx)
	if got := pickOnce(b.b, rs, Prompt{Bytes: 100}); got == rs[0] {
		t.Fatal("B sent a request behind the long prefill A reported")
	}
	holds[0].Started()
	a.ps.flush(ctx)
	if got := pickOnce(b.b, rs, Prompt{Bytes: 100}); got != rs[0] {
		t.Fatalf("B went to %s once the prefill was done; want %s (as loaded as the rest, first)", got.Node, rs[0].Node)
	}
	for _, h := range holds {
		h.Release()
	}
	// A report counts for PeerLoadTTL only.
	_, l, _ := a.b.Pick(rs, Prompt{}, only0)
	defer l.Release()
	a.ps.flush(ctx)
	now := time.Now()
	b.b.SetClock(func() time.Time { return now })
	if got := pickOnce(b.b, rs, Prompt{}); got == rs[0] {
		t.Fatal("B ignored A's fresh report")
	}
	now = now.Add(DefaultPeerLoadTTL + time.Second)
	if got := pickOnce(b.b, rs, Prompt{}); got != rs[0] {
		t.Fatalf("B still counts A's report %s old: went to %s", DefaultPeerLoadTTL+time.Second, got.Node)
	}
	// Nothing new to say: no batch, until half the report's life is over.
	sent := a.ps.lastSent
	a.ps.flush(ctx)
	if !a.ps.lastSent.Equal(sent) {
		t.Fatal("a batch went out with nothing new in it")
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
	if v := value(self.ps.metrics.failures); v != 0 {
		t.Fatalf("failures %v, want 0 (finding itself is none)", v)
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
