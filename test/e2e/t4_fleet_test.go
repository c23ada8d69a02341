package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// 7. Many models, few GPUs: six Models of one file at the default priority
// and keep-alive on two neurons that hold four. A request for a cold Model
// on a full fleet is answered after one eviction and one load, not after a
// keep-alive runs out; the evicted Model's status and the evictions metric
// say why. Each Model served one request, so the victim is the one whose
// request is oldest (its measured rate has decayed most; least recently
// used breaks exact ties).
func TestFullFleetEvictsLeastRecentlyUsedForAWaitingRequest(t *testing.T) {
	// Each neuron advertises 1 GiB; a 400 MiB need makes the fleet hold
	// exactly two replicas per neuron, whatever the estimate of the file.
	var names []string
	for i := 1; i <= 6; i++ {
		name := fmt.Sprintf("fleet-%d", i)
		names = append(names, name)
		apply(t, modelManifest(name, "chat-small.gguf",
			"  resources: {vram: 400Mi}\n  engine: {contextLength: 512, parallel: 1}\n"))
	}
	defer func() {
		for _, name := range names {
			_, _ = run("delete", "-n", ns, "model/"+name, "--wait=true", "--timeout=60s")
		}
	}()
	for _, name := range names {
		eventually(t, 30*time.Second, name+" to be Idle", func() (bool, string) {
			m := getModel(t, name)
			return m.Status.Phase == cortexv1.ModelPhaseIdle, describe(m)
		})
	}
	ask := func(name string) time.Duration {
		t.Helper()
		start := time.Now()
		resp, body := post(t, "/v1/chat/completions", map[string]any{"model": name, "max_tokens": 4,
			"messages": []any{map[string]any{"role": "user", "content": "hello"}}})
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", name, resp.StatusCode, body)
		}
		return time.Since(start)
	}
	for _, name := range names[:4] {
		d := ask(name)
		t.Logf("%s answered in %s (cold load included)", name, d.Round(time.Millisecond))
		// Distinct last-use times make the least recently used one certain.
		time.Sleep(300 * time.Millisecond)
	}
	loaded := func() []string {
		var out []string
		for _, node := range []string{"neuron-a", "neuron-b"} {
			for _, m := range resident(t, node) {
				out = append(out, node+":"+m)
			}
		}
		return out
	}
	if got := loaded(); len(got) != 4 {
		t.Fatalf("after four requests the fleet holds %v; want four replicas", got)
	}

	evictedBefore := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Evicted"}`)
	idleBefore := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Idle"}`)
	loadsBefore := metric(t, st.ManagerMetrics, `cortex_manager_loads_total{result="accepted"}`)

	d := ask(names[4])
	t.Logf("%s answered in %s on a full fleet (one eviction and one load)", names[4], d.Round(time.Millisecond))

	if n := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Evicted"}`) - evictedBefore; n != 1 {
		t.Fatalf("%v evictions for the fifth request; want 1", n)
	}
	if n := metric(t, st.ManagerMetrics, `cortex_manager_evictions_total{reason="Idle"}`) - idleBefore; n != 0 {
		t.Fatalf("%v idle unloads: the keep-alive (15m) cannot have run out", n)
	}
	if n := metric(t, st.ManagerMetrics, `cortex_manager_loads_total{result="accepted"}`) - loadsBefore; n != 1 {
		t.Fatalf("%v loads for the fifth request; want 1", n)
	}
	res := strings.Join(loaded(), " ")
	if strings.Contains(res, ns+"/"+names[0]) || !strings.Contains(res, ns+"/"+names[4]) {
		t.Fatalf("the fleet holds %s; want %s (least recently used) gone and %s loaded", res, names[0], names[4])
	}
	eventually(t, 30*time.Second, names[0]+" to say it was evicted", func() (bool, string) {
		m := getModel(t, names[0])
		c := meta.FindStatusCondition(m.Status.Conditions, cortexv1.ModelConditionReady)
		return m.Status.Phase == cortexv1.ModelPhaseIdle && c != nil && c.Reason == cortexv1.ReasonEvicted &&
			strings.Contains(c.Message, ns+"/"+names[4]), describe(m)
	})
	t.Logf("%s: %s", names[0], describe(getModel(t, names[0])))
	t.Logf("kubectl get models:\n%s", mustRun(t, "get", "models", "-n", ns))

	// The evicted Model comes back the same way: its request evicts the
	// next least recently used replica (fleet-2), never the one just loaded.
	d = ask(names[0])
	t.Logf("%s answered again in %s", names[0], d.Round(time.Millisecond))
	res = strings.Join(loaded(), " ")
	if strings.Contains(res, ns+"/"+names[1]) || !strings.Contains(res, ns+"/"+names[4]) || !strings.Contains(res, ns+"/"+names[0]) {
		t.Fatalf("the fleet holds %s; want %s evicted, %s and %s loaded", res, names[1], names[0], names[4])
	}
}
