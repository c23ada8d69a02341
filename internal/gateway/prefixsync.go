package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Prefix sync shares the balancer's prefix table among gateway replicas.
//
// Each replica remembers which neuron served each prompt prefix it routed
// (balancer.go), and sends the next request with that prefix there. With
// several replicas behind one Service, a conversation's turns land on
// different replicas, and a replica that never saw the first turn falls
// back to hashing: in the fleet simulator, two replicas without sharing
// found 0.81× the prefix hits of one (Mooncake's trace at the load where
// least-load collapses) and their mean time to first token was 1.5× as
// long (docs/fleet.md). So each replica batches what it remembered and
// posts it every PeerSyncInterval to every other replica, which records
// it as its own (Balancer.Learn). Each batch also carries the sender's
// requests in flight and prompt bytes awaiting prefill per GPU and per
// replica, which the receiver counts with its own in its wait estimates
// (Balancer.SetPeerLoad) and against the per-replica admission bound
// (admission.tryLocked): without them each of N replicas would send its
// requests to the same idle-looking neuron, and fill each replica to the
// bound. It is best effort by design:
// a batch a peer does not take is dropped, not retried, since a stale or
// missing entry costs a prefix hit or a less even load, never a wrong
// answer; only what a replica chose itself is sent, so nothing echoes.
//
// Peers are host:port pairs; a host that is a DNS name (the chart's
// headless Service) is resolved again every peerResolveEvery, so replicas
// that come and go are found. A replica finds itself among them by its
// instance id: a batch it sent to itself is answered 409 and that address
// is skipped from then on.

// PathPeerPrefixes is where a gateway takes its peers' prefix batches, on
// its peer address (--peer-addr), not on the API's.
const PathPeerPrefixes = "/internal/v1/prefixes"

// DefaultPeerSyncInterval is how often a gateway sends its peers what it
// routed, unless configured: a conversation's next turn rarely comes
// sooner, and in the fleet simulator a whole second still kept most of
// the gain.
const DefaultPeerSyncInterval = 100 * time.Millisecond

const (
	// prefixBatchMagic opens every batch: a version, so that a gateway
	// sent a format it does not know refuses it instead of misreading it.
	// CPX3 added the prompt bytes awaiting prefill to the load records;
	// a CPX2 batch (a replica not yet upgraded) is still read, its loads
	// without them.
	prefixBatchMagic   = "CPX3"
	prefixBatchMagicV2 = "CPX2"
	// Record kinds.
	recordPrefix = 'P'
	recordLoad   = 'L'
	// maxPeerInFlight bounds one load record's count.
	maxPeerInFlight = 1 << 20
	// maxPeerPrefill bounds one load record's prompt bytes awaiting
	// prefill (a sender caps what it sends there).
	maxPeerPrefill = 1 << 31
	// maxPrefixBatch bounds one batch, at both ends: a sender drops what
	// would exceed it (counted), a receiver refuses a larger body. 4 MiB
	// are about 8,000 requests of 64 keys, far more than a 100 ms interval
	// sees.
	maxPrefixBatch = 4 << 20
	// maxLoadBytes bounds a batch's load records (about 10,000 load keys
	// of devices and replicas busy at once), on top of maxPrefixBatch.
	maxLoadBytes = 1 << 20
	// maxEndpointBytes bounds one endpoint URL, or load key (an endpoint
	// with a device or a Model key), in a batch.
	maxEndpointBytes = 1024
	// headerGatewayInstance carries the sender's instance id.
	headerGatewayInstance = "Cortex-Gateway-Instance"
	// peerResolveEvery is how often peer names are looked up again.
	peerResolveEvery = 10 * time.Second
	// peerPostTimeout bounds one batch's delivery to one peer.
	peerPostTimeout = 2 * time.Second
)

// prefixRecord is one routed request: its prefix keys and the replica
// that got them.
type prefixRecord struct {
	endpoint string
	keys     []uint64
}

// prefixBatch is a decoded batch: the routed prefixes, and the sender's
// load by load key (Balancer.Loads: per device worker and per replica;
// complete: a key left out has none). A gateway of a version that keyed
// its load by endpoint alone sends keys this one never looks up, and the
// other way round: during a rolling upgrade across that change, peers'
// loads do not count until both ends run it; the prefixes still do.
type prefixBatch struct {
	prefixes []prefixRecord
	load     map[string]Load
}

// appendPrefixRecord encodes one routed request: the kind 'P', the
// endpoint's length (uint16) and bytes, the key count (uint16) and the
// keys (uint64), little-endian. An empty buf gets the batch's magic
// first.
func appendPrefixRecord(buf []byte, endpoint string, keys []uint64) []byte {
	buf = appendRecordHead(buf, recordPrefix, endpoint)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(keys)))
	for _, k := range keys {
		buf = binary.LittleEndian.AppendUint64(buf, k)
	}
	return buf
}

// appendLoadRecord encodes one load key's load: the kind 'L', the
// key as an endpoint above, the requests in flight and the prompt bytes awaiting
// prefill (uint32 each; CPX2 had only the first).
func appendLoadRecord(buf []byte, endpoint string, l Load) []byte {
	buf = appendRecordHead(buf, recordLoad, endpoint)
	buf = binary.LittleEndian.AppendUint32(buf, uint32(min(max(l.InFlight, 0), maxPeerInFlight)))
	return binary.LittleEndian.AppendUint32(buf, uint32(min(max(l.Prefill, 0), maxPeerPrefill)))
}

func appendRecordHead(buf []byte, kind byte, endpoint string) []byte {
	if len(buf) == 0 {
		buf = append(buf, prefixBatchMagic...)
	}
	buf = append(buf, kind)
	buf = binary.LittleEndian.AppendUint16(buf, uint16(len(endpoint)))
	return append(buf, endpoint...)
}

// prefixRecordSize is what appendPrefixRecord adds for one record.
func prefixRecordSize(endpoint string, keys []uint64) int {
	return 5 + len(endpoint) + 8*len(keys)
}

// decodePrefixBatch reads a whole batch, or says what is wrong with it;
// nothing of a malformed batch is returned.
func decodePrefixBatch(data []byte) (*prefixBatch, error) {
	loadBytes := 8
	switch {
	case bytes.HasPrefix(data, []byte(prefixBatchMagic)):
	case bytes.HasPrefix(data, []byte(prefixBatchMagicV2)):
		loadBytes = 4
	default:
		return nil, fmt.Errorf("not a prefix batch: it must start with %q", prefixBatchMagic)
	}
	data = data[len(prefixBatchMagic):]
	out := &prefixBatch{load: map[string]Load{}}
	for n := 0; len(data) > 0; n++ {
		if len(data) < 3 {
			return nil, fmt.Errorf("record %d: truncated head", n)
		}
		kind := data[0]
		el := int(binary.LittleEndian.Uint16(data[1:]))
		data = data[3:]
		if kind != recordPrefix && kind != recordLoad {
			return nil, fmt.Errorf("record %d: unknown kind %q", n, kind)
		}
		if el == 0 || el > maxEndpointBytes {
			return nil, fmt.Errorf("record %d: endpoint of %d bytes (want 1 to %d)", n, el, maxEndpointBytes)
		}
		if len(data) < el {
			return nil, fmt.Errorf("record %d: truncated endpoint", n)
		}
		ep := string(data[:el])
		data = data[el:]
		if kind == recordLoad {
			if len(data) < loadBytes {
				return nil, fmt.Errorf("record %d: truncated load", n)
			}
			var l Load
			l.InFlight = int(binary.LittleEndian.Uint32(data))
			if loadBytes == 8 {
				l.Prefill = int(binary.LittleEndian.Uint32(data[4:]))
			}
			data = data[loadBytes:]
			if l.InFlight > maxPeerInFlight {
				return nil, fmt.Errorf("record %d: %d requests in flight (at most %d)", n, l.InFlight, maxPeerInFlight)
			}
			if l.Prefill > maxPeerPrefill {
				return nil, fmt.Errorf("record %d: %d prompt bytes awaiting prefill (at most %d)", n, l.Prefill, maxPeerPrefill)
			}
			out.load[ep] = l
			continue
		}
		if len(data) < 2 {
			return nil, fmt.Errorf("record %d: truncated key count", n)
		}
		kn := int(binary.LittleEndian.Uint16(data))
		data = data[2:]
		if kn == 0 || kn > MaxPrefixKeys {
			return nil, fmt.Errorf("record %d: %d keys (want 1 to %d)", n, kn, MaxPrefixKeys)
		}
		if len(data) < 8*kn {
			return nil, fmt.Errorf("record %d: truncated keys", n)
		}
		keys := make([]uint64, kn)
		for i := range keys {
			keys[i] = binary.LittleEndian.Uint64(data[8*i:])
		}
		data = data[8*kn:]
		out.prefixes = append(out.prefixes, prefixRecord{ep, keys})
	}
	return out, nil
}

type prefixSyncMetrics struct {
	records  *prometheus.CounterVec
	failures prometheus.Counter
	dropped  prometheus.Counter
	peers    prometheus.Gauge
}

func newPrefixSyncMetrics(reg prometheus.Registerer) *prefixSyncMetrics {
	m := &prefixSyncMetrics{
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "cortex_gateway_prefix_sync_records_total",
			Help: "Routed prompt prefixes shared with the other gateway replicas (direction sent: each counted once per peer it reached; received: learned from a peer).",
		}, []string{"direction"}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cortex_gateway_prefix_sync_failures_total",
			Help: "Prefix batches a peer did not take (unreachable, timed out or refused); their records are dropped.",
		}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "cortex_gateway_prefix_sync_dropped_records_total",
			Help: "Routed prefixes not shared because the pending batch was full.",
		}),
		peers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "cortex_gateway_prefix_sync_peers",
			Help: "Other gateway replicas this one shares routed prefixes with.",
		}),
	}
	reg.MustRegister(m.records, m.failures, m.dropped, m.peers)
	return m
}

// prefixSync sends what the balancer remembers to the peers and learns
// what they send.
type prefixSync struct {
	balancer *Balancer
	tokens   *neuronapi.TokenSource
	client   *http.Client
	instance string
	specs    []string
	interval time.Duration
	log      logr.Logger
	metrics  *prefixSyncMetrics
	// lookup resolves a peer's host (net.DefaultResolver's in production).
	lookup func(ctx context.Context, host string) ([]string, error)
	// loadChanged, when set, is called after a peer's load report is
	// recorded and at every tick: requests waiting for room that a peer's
	// requests held may go now (admission.poke).
	loadChanged func()

	mu      sync.Mutex
	out     []byte // the pending batch
	records int
	// lastLoad and lastSent are the load last sent and when.
	lastLoad map[string]Load
	lastSent time.Time
	byName   map[string][]string // resolved addresses by spec
	self     map[string]bool     // addresses that turned out to be this replica
}

func newPrefixSync(b *Balancer, tokens *neuronapi.TokenSource, peers []string, interval time.Duration, reg prometheus.Registerer) *prefixSync {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	s := &prefixSync{
		balancer: b,
		tokens:   tokens,
		client:   &http.Client{Timeout: peerPostTimeout},
		instance: hex.EncodeToString(id),
		specs:    peers,
		interval: interval,
		log:      logr.Discard(),
		metrics:  newPrefixSyncMetrics(reg),
		lookup:   net.DefaultResolver.LookupHost,
		byName:   map[string][]string{},
		self:     map[string]bool{},
	}
	b.mu.Lock()
	b.Remembered = s.remembered
	b.mu.Unlock()
	return s
}

// remembered queues one routed request for the next batch. It runs under
// the balancer's lock, so it only appends.
func (s *prefixSync) remembered(keys []uint64, endpoint string) {
	if len(endpoint) == 0 || len(endpoint) > maxEndpointBytes || len(keys) == 0 {
		return
	}
	keys = keys[:min(len(keys), MaxPrefixKeys)]
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.out)+prefixRecordSize(endpoint, keys)+len(prefixBatchMagic) > maxPrefixBatch {
		s.metrics.dropped.Inc()
		return
	}
	s.out = appendPrefixRecord(s.out, endpoint, keys)
	s.records++
}

// run sends a batch every interval and resolves the peers again every
// peerResolveEvery, until ctx ends.
func (s *prefixSync) run(ctx context.Context) {
	s.resolve(ctx)
	send := time.NewTicker(s.interval)
	defer send.Stop()
	resolve := time.NewTicker(peerResolveEvery)
	defer resolve.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-resolve.C:
			s.resolve(ctx)
		case <-send.C:
			s.flush(ctx)
			if s.loadChanged != nil {
				s.loadChanged()
			}
		}
	}
}

// peers are the addresses batches go to: every resolved one but this
// replica's own.
func (s *prefixSync) peers() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, spec := range s.specs {
		for _, a := range s.byName[spec] {
			if !s.self[a] && !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	return out
}

// resolve looks every peer's host up again. A failed lookup keeps that
// peer's previous addresses: DNS hiccups should not cut the sharing.
func (s *prefixSync) resolve(ctx context.Context) {
	for _, spec := range s.specs {
		host, port, err := net.SplitHostPort(spec)
		if err != nil {
			continue // Validate refused it already
		}
		lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		hosts, err := s.lookup(lctx, host)
		cancel()
		if err != nil {
			s.log.V(1).Info("Resolving a gateway peer failed; keeping its last addresses", "peer", spec, "error", err.Error())
			continue
		}
		addrs := make([]string, 0, len(hosts))
		for _, h := range hosts {
			addrs = append(addrs, net.JoinHostPort(h, port))
		}
		slices.Sort(addrs)
		s.mu.Lock()
		s.byName[spec] = addrs
		s.mu.Unlock()
	}
	s.metrics.peers.Set(float64(len(s.peers())))
}

// flush posts the pending batch, with this replica's requests in flight,
// to every peer at once and waits for them, so a slow peer delays the next
// batch rather than piling up requests; meanwhile records queue up to
// maxPrefixBatch. A batch goes out when there are routed prefixes, when
// the load changed, and otherwise at least every half PeerLoadTTL,
// so the peers' view of this replica's load neither goes stale nor
// expires.
func (s *prefixSync) flush(ctx context.Context) {
	load := s.balancer.Loads()
	s.mu.Lock()
	batch, n := s.out, s.records
	s.out, s.records = nil, 0
	now := time.Now()
	quiet := n == 0 && maps.Equal(load, s.lastLoad) && now.Sub(s.lastSent) < PeerLoadTTL(s.interval)/2
	if !quiet {
		s.lastLoad, s.lastSent = load, now
	}
	s.mu.Unlock()
	if quiet {
		return
	}
	if len(batch) == 0 {
		batch = append(batch, prefixBatchMagic...)
	}
	loadStart := len(batch)
	for _, ep := range slices.Sorted(maps.Keys(load)) {
		if len(ep) <= maxEndpointBytes && len(batch)-loadStart+11+len(ep) <= maxLoadBytes {
			batch = appendLoadRecord(batch, ep, load[ep])
		}
	}
	var wg sync.WaitGroup
	for _, addr := range s.peers() {
		wg.Go(func() {
			if err := s.post(ctx, addr, batch); errors.Is(err, errPeerIsSelf) {
				return
			} else if err != nil {
				s.metrics.failures.Inc()
				s.log.V(1).Info("A gateway peer did not take a prefix batch", "peer", addr, "error", err.Error())
				return
			}
			s.metrics.records.WithLabelValues("sent").Add(float64(n))
		})
	}
	wg.Wait()
}

// PeerLoadTTL is how long a peer's report of its requests in flight counts
// when its batches come every interval: DefaultPeerLoadTTL, or three
// intervals if that is longer. Gateway replicas share their settings, so
// a receiver applies its own interval to its peers' reports.
func PeerLoadTTL(interval time.Duration) time.Duration {
	return max(DefaultPeerLoadTTL, 3*interval)
}

var errPeerIsSelf = errors.New("the peer is this gateway")

func (s *prefixSync) post(ctx context.Context, addr string, batch []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+PathPeerPrefixes, bytes.NewReader(batch))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set(headerGatewayInstance, s.instance)
	if tok := s.tokens.Token(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	switch {
	case resp.StatusCode == http.StatusConflict && resp.Header.Get(headerGatewayInstance) == s.instance:
		s.mu.Lock()
		s.self[addr] = true
		s.mu.Unlock()
		s.metrics.peers.Set(float64(len(s.peers())))
		return errPeerIsSelf
	case resp.StatusCode/100 != 2:
		return fmt.Errorf("%s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	return nil
}

// ServeHTTP takes a peer's batch.
func (s *prefixSync) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "only POST", http.StatusMethodNotAllowed)
		return
	}
	if s.tokens.Enabled() {
		tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || !s.tokens.Accepts(tok) {
			http.Error(w, "a prefix batch needs the neuron token as a bearer token", http.StatusUnauthorized)
			return
		}
	}
	peer := r.Header.Get(headerGatewayInstance)
	if peer == "" {
		http.Error(w, "a prefix batch needs its sender's "+headerGatewayInstance+" header", http.StatusBadRequest)
		return
	}
	if peer == s.instance {
		w.Header().Set(headerGatewayInstance, s.instance)
		http.Error(w, "this is the sending gateway itself", http.StatusConflict)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPrefixBatch+maxLoadBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("a prefix batch is at most %d bytes", maxPrefixBatch+maxLoadBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "reading the batch: "+err.Error(), http.StatusBadRequest)
		return
	}
	batch, err := decodePrefixBatch(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	for _, rec := range batch.prefixes {
		s.balancer.Learn(rec.keys, rec.endpoint)
	}
	s.balancer.SetPeerLoad(peer, batch.load)
	if s.loadChanged != nil {
		s.loadChanged()
	}
	s.metrics.records.WithLabelValues("received").Add(float64(len(batch.prefixes)))
	w.WriteHeader(http.StatusNoContent)
}
