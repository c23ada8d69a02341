package gateway

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neurontest"
)

// overloadHarness is a gateway with a per-replica limit of one request
// (parallel 1, one request per slot) in front of one simulated neuron that
// holds every request until released.
func overloadHarness(t *testing.T, timeout time.Duration, tweak ...func(*Config)) (*harness, *neurontest.Server) {
	t.Helper()
	h := newHarness(t, append([]func(*Config){func(c *Config) {
		c.Admission = AdmissionConfig{MaxInFlight: 0, PerSlot: 1, Timeout: timeout}
	}}, tweak...)...)
	n := h.neuron("n1", "team/llama", "team/other")
	for _, name := range []string{"llama", "other"} {
		m := h.model("team", name, nil, "n1")
		m.Spec.Engine.Parallel = 1
		h.g.catalog.UpsertModel(m)
	}
	n.SetHung(true)
	t.Cleanup(func() { n.SetHung(false) })
	return h, n
}

// holdOne sends a request that the hung neuron keeps, and returns once the
// gateway counts it admitted; the channel yields its status at the end.
func (h *harness) holdOne(model string) <-chan int {
	h.t.Helper()
	before := h.metric("cortex_gateway_admitted_requests")
	done := h.chatAsync(model)
	waitFor(h.t, "the held request to be admitted", func() bool { return h.metric("cortex_gateway_admitted_requests") > before })
	return done
}

// chatAsync sends a plain chat request for model; the channel yields its
// status once the answer is read.
func (h *harness) chatAsync(model string) <-chan int {
	done := make(chan int, 1)
	go func() {
		resp := h.post("/v1/chat/completions", "sk-alice", chat(model, false))
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		done <- resp.StatusCode
	}()
	return done
}

// metric is the value of the gateway's metric name whose labels include
// the given name/value pairs, summed over matching series (0 if none).
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	families, err := h.g.metrics.registry.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			match := true
			for i := 0; i+1 < len(labels); i += 2 {
				match = match && have[labels[i]] == labels[i+1]
			}
			if match {
				sum += m.GetGauge().GetValue() + m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func anthropicMsg(model string, stream bool) map[string]any {
	return map[string]any{"model": model, "max_tokens": 20, "stream": stream, "messages": []any{map[string]any{"role": "user", "content": "hi"}}}
}

func TestOverloadIsAnsweredInTheCallersDialect(t *testing.T) {
	h, n := overloadHarness(t, 20*time.Millisecond)
	held := h.holdOne("llama")

	cases := []struct {
		name, path string
		body       any
		status     int
		want       []string
	}{
		{"openai", "/v1/chat/completions", chat("llama", false), http.StatusTooManyRequests,
			[]string{`"type":"rate_limit_exceeded"`, `"code":"overloaded"`, `team/llama`}},
		{"openai stream", "/v1/chat/completions", chat("llama", true), http.StatusTooManyRequests,
			[]string{`"code":"overloaded"`}},
		{"responses", "/v1/responses", map[string]any{"model": "llama", "input": "hi"}, http.StatusTooManyRequests,
			[]string{`"code":"overloaded"`}},
		{"anthropic", "/v1/messages", anthropicMsg("llama", false), 529,
			[]string{`"type":"error"`, `"type":"overloaded_error"`, `"request_id":"req_`}},
		{"anthropic stream", "/v1/messages", anthropicMsg("llama", true), 529,
			[]string{`"type":"overloaded_error"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp := h.post(tc.path, "sk-alice", tc.body)
			body := readAll(t, resp)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			// Turned away before any stream began: a plain JSON answer.
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Fatalf("content type %q", ct)
			}
			if ra := resp.Header.Get("Retry-After"); ra != "1" {
				t.Fatalf("Retry-After %q", ra)
			}
			for _, w := range tc.want {
				if !strings.Contains(body, w) {
					t.Fatalf("body lacks %s: %s", w, body)
				}
			}
		})
	}
	if got := h.metric("cortex_gateway_overload_rejections_total", "model", "team/llama", "reason", overloadReplica); got != float64(len(cases)) {
		t.Fatalf("overload rejections = %v, want %d", got, len(cases))
	}
	// The limit is per replica of a Model: another Model on the same
	// neuron still gets its own slot.
	other := h.holdOne("other")

	n.SetHung(false)
	for _, ch := range []<-chan int{held, other} {
		if status := <-ch; status != http.StatusOK {
			t.Fatalf("held request ended %d", status)
		}
	}
}

func TestWaitingRequestIsAdmittedWhenASlotFrees(t *testing.T) {
	// A wait far longer than the test: only the freed slot can end it.
	h, n := overloadHarness(t, time.Minute)
	held := h.holdOne("llama")

	type answer struct {
		status int
		body   string
	}
	waiting := make(chan answer, 1)
	go func() {
		resp := h.post("/v1/messages", "sk-alice", anthropicMsg("llama", false))
		waiting <- answer{resp.StatusCode, readAll(t, resp)}
	}()
	waitFor(t, "the second request to queue", func() bool { return h.g.admit.waiting("team/llama") == 1 })
	select {
	case a := <-waiting:
		t.Fatalf("answered while the slot was taken: %d %s", a.status, a.body)
	default:
	}

	n.SetHung(false)
	if status := <-held; status != http.StatusOK {
		t.Fatalf("held request ended %d", status)
	}
	a := <-waiting
	var msg struct {
		Type    string `json:"type"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if a.status != http.StatusOK || json.Unmarshal([]byte(a.body), &msg) != nil || msg.Type != "message" || len(msg.Content) == 0 {
		t.Fatalf("waiting request: %d %s", a.status, a.body)
	}
	if got := h.metric("cortex_gateway_overload_rejections_total"); got != 0 {
		t.Fatalf("%v rejections, want none", got)
	}
	// Both were admitted, one of them after a wait.
	if got := h.metric("cortex_gateway_admission_wait_seconds", "model", "team/llama"); got != 2 {
		t.Fatalf("%v admissions observed, want 2", got)
	}
	if h.g.admit.waiting("team/llama") != 0 || h.metric("cortex_gateway_admitted_requests") != 0 {
		t.Fatal("slots or waiters left behind")
	}
}

func TestGatewayWideCap(t *testing.T) {
	h, n := overloadHarness(t, 20*time.Millisecond, func(c *Config) {
		c.Admission.PerSlot = 0
		c.Admission.MaxInFlight = 1
	})
	held := h.holdOne("llama")
	// Another Model, with room on its replica: the gateway's own cap
	// turns it away.
	resp := h.post("/v1/messages", "sk-alice", anthropicMsg("other", true))
	if body := readAll(t, resp); resp.StatusCode != 529 || !strings.Contains(body, "overloaded_error") || !strings.Contains(body, "gateway") {
		t.Fatalf("over the gateway cap: %d %s", resp.StatusCode, body)
	}
	if got := h.metric("cortex_gateway_overload_rejections_total", "model", "team/other", "reason", overloadGateway); got != 1 {
		t.Fatalf("gateway rejections = %v", got)
	}
	n.SetHung(false)
	if status := <-held; status != http.StatusOK {
		t.Fatalf("held request ended %d", status)
	}
}

func TestNeuronQueueFullIsOverloadedInEachDialect(t *testing.T) {
	h := newHarness(t)
	a := h.neuron("n1", "team/llama")
	b := h.neuron("n2", "team/llama")
	h.model("team", "llama", nil, "n1", "n2")
	// Both replicas' queues are full: the gateway tries each once, then
	// passes the neuron's answer on in the caller's dialect.
	a.SetInference(neurontest.Inference{FailStatus: http.StatusTooManyRequests})
	b.SetInference(neurontest.Inference{FailStatus: http.StatusTooManyRequests})

	resp := h.post("/v1/chat/completions", "sk-alice", chat("llama", true))
	body := readAll(t, resp)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(body, `"code":"overloaded"`) {
		t.Fatalf("openai: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	resp = h.post("/v1/messages", "sk-alice", anthropicMsg("llama", false))
	body = readAll(t, resp)
	if resp.StatusCode != 529 || !strings.Contains(body, `"type":"overloaded_error"`) {
		t.Fatalf("anthropic: %d %s", resp.StatusCode, body)
	}
	if got := h.metric("cortex_gateway_overload_rejections_total", "model", "team/llama", "reason", overloadUpstream); got != 2 {
		t.Fatalf("upstream rejections = %v", got)
	}
	paths, _ := a.Requests()
	paths2, _ := b.Requests()
	if len(paths) != 2 || len(paths2) != 2 {
		t.Fatalf("attempts per replica: %d and %d, want 2 each", len(paths), len(paths2))
	}
}

func TestAdmissionIsFirstComeFirstServed(t *testing.T) {
	m := newMetrics()
	a := newAdmission(AdmissionConfig{PerSlot: 1, Timeout: time.Minute}, NewBalancer(), m)
	rep := []Replica{{Node: "n1", Endpoint: "http://n1"}}
	never := func(string) <-chan struct{} { return nil }
	ctx := t.Context()
	wait := waitOpts{deadline: time.Now().Add(time.Minute), changed: never}

	first, err := a.acquire(ctx, &ticket{model: "m", reps: rep, limit: 1}, wait)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 2)
	for i, name := range []string{"second", "third"} {
		go func() {
			s, err := a.acquire(ctx, &ticket{model: "m", reps: rep, limit: 1}, wait)
			if err != nil {
				got <- err.Error()
				return
			}
			got <- name
			<-ctx.Done()
			s.release()
		}()
		waitFor(t, name+" to queue", func() bool { return a.waiting("m") == i+1 })
	}
	first.release()
	if g := <-got; g != "second" {
		t.Fatalf("first freed slot went to %s", g)
	}
	// A newcomer finds no room: the freed slot is taken, and the third
	// still waits ahead of it.
	_, err = a.acquire(ctx, &ticket{model: "m", reps: rep, limit: 1}, waitOpts{deadline: time.Now(), changed: never})
	var ae *apiError
	if !errors.As(err, &ae) || ae.err.Code != "overloaded" || a.waiting("m") != 1 {
		t.Fatalf("newcomer: %v, %d waiting", err, a.waiting("m"))
	}
	// Every replica excluded is not a wait.
	if _, err := a.acquire(ctx, &ticket{model: "m", reps: rep, limit: 1, exclude: []string{"http://n1"}}, wait); !errors.Is(err, errAllTried) {
		t.Fatalf("all excluded: %v", err)
	}
}

// The other gateway replicas' requests to a replica, as their prefix sync
// reports them, count against its bound here: a request finds the
// replica full and waits until a report says a peer's request ended, or
// until that peer's report goes stale.
func TestPeerRequestsCountAgainstTheReplicaBound(t *testing.T) {
	h, n := overloadHarness(t, time.Minute)
	n.SetHung(false)
	h.g.balancer.PeerLoadTTL = time.Hour
	rep := h.g.catalog.Replicas("team/llama")[0]
	full := map[string]Load{replicaKey("team/llama", rep): {InFlight: 1}, deviceKey(rep): {InFlight: 1}}
	h.g.balancer.SetPeerLoad("peer-b", full)

	answered := h.chatAsync("llama")
	waitFor(t, "the request to queue behind the peer's", func() bool { return h.g.admit.waiting("team/llama") == 1 })
	// Another Model on the same neuron has its own sequences.
	if resp := h.post("/v1/chat/completions", "sk-alice", chat("other", false)); resp.StatusCode != http.StatusOK {
		t.Fatalf("other model: %d %s", resp.StatusCode, readAll(t, resp))
	} else {
		_ = resp.Body.Close()
	}
	h.g.admit.poke() // a report with the replica still full frees nothing
	select {
	case s := <-answered:
		t.Fatalf("answered %d while a peer's request held the replica's one slot", s)
	case <-time.After(100 * time.Millisecond):
	}
	h.g.balancer.SetPeerLoad("peer-b", map[string]Load{})
	h.g.admit.poke()
	if s := <-answered; s != http.StatusOK {
		t.Fatalf("after the peer's request ended: %d", s)
	}

	// A peer that stops reporting stops counting after PeerLoadTTL.
	h.g.balancer.PeerLoadTTL = 200 * time.Millisecond
	h.g.balancer.SetPeerLoad("peer-b", full)
	answered = h.chatAsync("llama")
	waitFor(t, "the request to queue behind the silent peer's", func() bool { return h.g.admit.waiting("team/llama") == 1 })
	time.Sleep(250 * time.Millisecond)
	h.g.admit.poke() // the sync's next tick
	if s := <-answered; s != http.StatusOK {
		t.Fatalf("after the peer's report went stale: %d", s)
	}
}
