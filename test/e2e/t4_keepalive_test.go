package e2e

import (
	"net/http"
	"strings"
	"testing"
	"time"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/placement"
)

// 8. A Model without spec.keepAlive learns one from its own traffic: asked
// every half second through the gateway, it gets the 30s minimum and idles
// out 30s after its last request, where the old default kept it 15m.
func TestKeepAliveIsLearnedFromTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the 30s minimum keep-alive")
	}
	const name = "learns"
	apply(t, modelManifest(name, "stories260K.gguf", "  engine: {contextLength: 256, parallel: 1}\n  resources: {vram: 100Mi}\n"))
	defer func() { _, _ = run("delete", "-n", ns, "model/"+name, "--wait=true", "--timeout=60s") }()
	idleBefore := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Idle"}`)
	var last time.Time
	for range 2 * placement.MinIdleObservations {
		resp, body := post(t, "/v1/completions", map[string]any{"model": name, "prompt": "Once", "max_tokens": 2})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%d %s", resp.StatusCode, body)
		}
		last = time.Now()
		time.Sleep(500 * time.Millisecond) // above the 300ms poll: each use is seen
	}
	if m := getModel(t, name); m.Status.KeepAliveSource == cortexv1.KeepAliveFromSpec {
		t.Fatalf("keep-alive from the spec: %s", describe(m))
	}
	// Uses bring no pass of their own; any change to the Model does.
	mustRun(t, "label", "-n", ns, "model/"+name, "traffic=seen", "--overwrite")
	eventually(t, 15*time.Second, "a learned keep-alive", func() (bool, string) {
		m := getModel(t, name)
		return m.Status.KeepAliveSource == cortexv1.KeepAliveLearned && m.Status.KeepAlive != nil &&
			m.Status.KeepAlive.Duration == placement.MinKeepAlive, describe(m)
	})
	if wide := mustRun(t, "get", "-n", ns, "model/"+name, "-o", "wide"); !strings.Contains(wide, "KEEP-ALIVE") || !strings.Contains(wide, "30s") {
		t.Fatalf("kubectl get -o wide shows no keep-alive of 30s:\n%s", wide)
	}
	eventually(t, placement.MinKeepAlive+20*time.Second, name+" to idle out", func() (bool, string) {
		m := getModel(t, name)
		return m.Status.Phase == cortexv1.ModelPhaseIdle, describe(m)
	})
	if idle := time.Since(last); idle < placement.MinKeepAlive {
		t.Fatalf("idled out %s after its last request, before the 30s minimum", idle.Round(time.Millisecond))
	}
	t.Logf("idled out %s after its last request", time.Since(last).Round(100*time.Millisecond))
	if n := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Idle"}`) - idleBefore; n != 1 {
		t.Fatalf("%v idle unloads; want 1", n)
	}
	events := mustRun(t, "events", "-n", ns, "--for", "model/"+name)
	if !strings.Contains(events, "IdleUnload") || !strings.Contains(events, "learned from") {
		t.Fatalf("no IdleUnload event naming the learned keep-alive:\n%s", events)
	}
}
