package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/wire/sse/ssecheck"
)

// 3. A cold Model: the first request is held while it loads, then answered.
func TestColdModelIsLoadedByItsFirstRequest(t *testing.T) {
	apply(t, modelManifest("chat-small", "chat-small.gguf",
		"  servedNames: [chat-small, gpt-4o-mini]\n  priority: 10\n  replicas: {min: 0, max: 1}\n  placement: {nodeNames: [neuron-b]}\n  engine: {contextLength: 1024, parallel: 2}\n"))
	eventually(t, 30*time.Second, "chat-small to be Idle", func() (bool, string) {
		m := getModel(t, "chat-small")
		return m.Status.Phase == cortexv1.ModelPhaseIdle, describe(m)
	})
	if contains(resident(t, "neuron-b"), ns+"/chat-small") {
		t.Fatal("an idle model is loaded")
	}
	before := metric(t, st.GatewayMetrics, `cortex_gateway_cold_start_wait_seconds_count{model="e2e/chat-small"}`)
	start := time.Now()
	resp, body := post(t, "/v1/chat/completions", map[string]any{"model": "gpt-4o-mini", "max_tokens": 8,
		"messages": []any{map[string]any{"role": "user", "content": "hello"}}})
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `"chat.completion"`) {
		t.Fatalf("cold request: %d %s", resp.StatusCode, body)
	}
	t.Logf("cold request held and answered in %s", time.Since(start).Round(time.Millisecond))
	if after := metric(t, st.GatewayMetrics, `cortex_gateway_cold_start_wait_seconds_count{model="e2e/chat-small"}`); after != before+1 {
		t.Fatalf("cold-start waits %v → %v", before, after)
	}
	if !contains(resident(t, "neuron-b"), ns+"/chat-small") {
		t.Fatal("chat-small not loaded on neuron-b")
	}
}

// 4. Fill a node: the lower-priority idle model is evicted, the pinned one
// never is; status and metrics show it.
func TestFullNodeEvictsLowerPriorityNeverPinned(t *testing.T) {
	spec := func(extra string) string {
		return "  placement: {nodeNames: [neuron-a]}\n  engine: {contextLength: 512, parallel: 1}\n" + extra
	}
	apply(t, modelManifest("anchor", "stories260K.gguf", spec("  pinned: true\n  priority: -5\n  resources: {vram: 500Mi}\n")))
	apply(t, modelManifest("low", "stories260K.gguf", spec("  priority: 0\n  replicas: {min: 1, max: 1}\n  resources: {vram: 400Mi}\n")))
	for _, name := range []string{"anchor", "low"} {
		mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/"+name, "--timeout=120s")
	}
	// low is held only by replicas.min: drop it to 0 so it is an idle,
	// lower-priority replica — the one to go.
	mustRun(t, "patch", "-n", ns, "model/low", "--type=merge", "-p", `{"spec":{"replicas":{"min":0}}}`)
	evictedBefore := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Evicted"}`)

	apply(t, modelManifest("high", "stories260K.gguf", spec("  priority: 50\n  replicas: {min: 1, max: 1}\n  resources: {vram: 400Mi}\n")))
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/high", "--timeout=120s")
	res := resident(t, "neuron-a")
	if !contains(res, ns+"/anchor") || !contains(res, ns+"/high") || contains(res, ns+"/low") {
		t.Fatalf("neuron-a holds %v; want anchor and high, not low", res)
	}
	if after := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Evicted"}`); after < evictedBefore+1 {
		t.Fatalf("evictions metric %v → %v", evictedBefore, after)
	}
	low := getModel(t, "low")
	if len(low.Status.Replicas) != 0 {
		t.Fatalf("low still reports replicas: %s", describe(low))
	}
	out := mustRun(t, "get", "models", "-n", ns, "anchor", "low", "high")
	t.Logf("after the eviction:\n%s", out)

	// A request for low now wants it back; only evicting the pinned anchor
	// or the higher high would make room, so it stays unschedulable with a
	// reason a human can read.
	go func() {
		// Held until the cold-start timeout; its answer does not matter.
		body := strings.NewReader(`{"model":"low","max_tokens":4,"messages":[{"role":"user","content":"x"}]}`)
		req, _ := http.NewRequest(http.MethodPost, st.GatewayURL+"/v1/chat/completions", body)
		req.Header.Set("Authorization", "Bearer "+st.APIKey)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			_ = resp.Body.Close()
		}
	}()
	eventually(t, 30*time.Second, "low to be Unschedulable", func() (bool, string) {
		m := getModel(t, "low")
		return m.Status.Phase == cortexv1.ModelPhaseUnschedulable, describe(m)
	})
	t.Logf("low: %s", describe(getModel(t, "low")))
	if !contains(resident(t, "neuron-a"), ns+"/anchor") {
		t.Fatal("the pinned model was evicted")
	}
	for _, name := range []string{"low", "high", "anchor"} {
		mustRun(t, "delete", "-n", ns, "model/"+name, "--wait=true", "--timeout=60s")
	}
}

// 5. kill -9 a neuron mid-stream: the client gets a clean error event, the
// NeuronNode turns NotReady, the model is re-placed on the other neuron
// and the next request succeeds.
func TestKillNeuronMidStream(t *testing.T) {
	apply(t, modelManifest("chat-large", "chat-large.gguf",
		"  priority: 0\n  replicas: {min: 1, max: 1}\n  engine: {contextLength: 2048, parallel: 1}\n"))
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/chat-large", "--timeout=180s")
	victim := getModel(t, "chat-large").Status.Nodes
	other := map[string]string{"neuron-a": "neuron-b", "neuron-b": "neuron-a"}[victim]
	if other == "" {
		t.Fatalf("chat-large on %q", victim)
	}

	data, _ := json.Marshal(map[string]any{"model": "chat-large", "stream": true, "max_tokens": 1500,
		"messages": []any{map[string]any{"role": "user", "content": "Write a very long story."}}})
	req, _ := http.NewRequest(http.MethodPost, st.GatewayURL+"/v1/chat/completions", bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+st.APIKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var got bytes.Buffer
	br := bufio.NewReader(resp.Body)
	killed := false
	for {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if !killed && strings.Contains(line, `"content":"`) && !strings.Contains(line, `"content":""`) {
			if err := st.Kill(victim); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
		if err != nil {
			break
		}
	}
	stream := got.String()
	if !killed {
		t.Fatalf("the stream ended before any content:\n%s", stream)
	}
	if strings.Contains(stream, "[DONE]") || !strings.Contains(stream, `"error":{`) {
		t.Fatalf("want an error event and no [DONE] after the kill:\n%s", lastLines(stream, 5))
	}
	if err := ssecheck.OpenAIChatStream(strings.NewReader(stream)); err != nil {
		t.Fatalf("the cut stream breaks the grammar: %v", err)
	}
	waitNodeReady(t, victim, false)
	eventually(t, 120*time.Second, "chat-large re-placed on "+other, func() (bool, string) {
		m := getModel(t, "chat-large")
		return m.Status.Phase == cortexv1.ModelPhaseReady && m.Status.Nodes == other, describe(m)
	})
	r, body := post(t, "/v1/chat/completions", map[string]any{"model": "chat-large", "max_tokens": 8,
		"messages": []any{map[string]any{"role": "user", "content": "again"}}})
	if r.StatusCode != http.StatusOK {
		t.Fatalf("after re-placement: %d %s", r.StatusCode, body)
	}
	// Bring the neuron back for the tests that follow.
	if err := st.Restart(victim); err != nil {
		t.Fatal(err)
	}
	waitNodeReady(t, victim, true)
	mustRun(t, "delete", "-n", ns, "model/chat-large", "--wait=true", "--timeout=60s")
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// A replica whose process died is retried elsewhere before the first byte:
// no client sees the dead replica while the manager has not noticed yet.
func TestDeadReplicaIsRetriedBeforeFirstByte(t *testing.T) {
	apply(t, modelManifest("twin", "stories260K.gguf",
		"  replicas: {min: 2, max: 2}\n  engine: {contextLength: 512, parallel: 2}\n"))
	mustRun(t, "wait", "-n", ns, "--for=condition=Ready", "model/twin", "--timeout=120s")
	if m := getModel(t, "twin"); m.Status.Ready != "2/2" {
		t.Fatalf("twin: %s", describe(m))
	}
	before := metric(t, st.GatewayMetrics, `cortex_gateway_retries_total{model="e2e/twin"}`)
	if err := st.Kill("neuron-a"); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		r, body := post(t, "/v1/chat/completions", map[string]any{"model": "twin", "max_tokens": 4, "stream": i%2 == 0,
			"messages": []any{map[string]any{"role": "user", "content": fmt.Sprintf("hello %d", i)}}})
		if r.StatusCode != http.StatusOK || strings.Contains(body, `"error"`) {
			t.Fatalf("request %d after the kill: %d %s", i, r.StatusCode, body)
		}
	}
	after := metric(t, st.GatewayMetrics, `cortex_gateway_retries_total{model="e2e/twin"}`)
	t.Logf("retries %v → %v", before, after)
	if after <= before {
		t.Fatal("no request was retried: the dead replica was never tried (the test proves nothing)")
	}
	if err := st.Restart("neuron-a"); err != nil {
		t.Fatal(err)
	}
	waitNodeReady(t, "neuron-a", true)
	eventually(t, 120*time.Second, "twin back to 2/2", func() (bool, string) {
		m := getModel(t, "twin")
		return m.Status.Ready == "2/2", describe(m)
	})
	mustRun(t, "delete", "-n", ns, "model/twin", "--wait=true", "--timeout=60s")
}

// 6. Delete the Models: each is unloaded everywhere.
func TestDeleteUnloadsEverywhere(t *testing.T) {
	// Nothing in this suite changed a Model's source or engine settings, so
	// no replica may have been reloaded as outdated (the neuron echoes the
	// settings it loaded with; a mismatch would make the manager flap).
	if n := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Outdated"}`); n != 0 {
		t.Fatalf("%v replicas were reloaded as outdated", n)
	}
	mustRun(t, "delete", "models", "--all", "-n", ns, "--wait=true", "--timeout=120s")
	var list cortexv1.ModelList
	if err := st.Client.List(context.Background(), &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 0 {
		t.Fatalf("%d Models remain", len(list.Items))
	}
	for _, node := range []string{"neuron-a", "neuron-b"} {
		if res := resident(t, node); len(res) != 0 {
			t.Fatalf("%s still holds %v", node, res)
		}
	}
}
