package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/gateway"
)

// TestHealthAndLocations runs the real gateway against the test API server
// with NeuronNodes and Models written as the neurons and the manager would
// (no manager runs, so the statuses stay as written), and reads /health
// and /v1/models as the fleet changes.
func TestHealthAndLocations(t *testing.T) {
	const ns = "health"
	ctx, cancel := context.WithCancel(log.IntoContext(context.Background(), logr.Discard()))
	defer cancel()
	waitNoNeuronNodes(t, ctx)
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))

	keys := filepath.Join(t.TempDir(), "keys")
	must(t, os.WriteFile(keys, []byte("ops:sk-ops\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	cfg := gateway.DefaultConfig()
	cfg.APIKeysFile, cfg.Namespace, cfg.MetricsAddr = keys, ns, "0"
	ready := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- gateway.Run(ctx, cfg, env.Config, gateway.Options{Listener: ln, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway stopped with error: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()

	// /health shows model and node names: it takes a key like /v1/models.
	resp, err := http.Get(base + "/health")
	must(t, err)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/health without a key: %d, want 401", resp.StatusCode)
	}

	const gi = 1 << 30
	putNode(t, ctx, "health-a", true, "http://127.0.0.1:1", cortexv1.GPU{Index: 0, Kind: cortexv1.DeviceCUDA, MemoryFreeBytes: 10 * gi, MemoryTotalBytes: 16 * gi})
	putNode(t, ctx, "health-b", false, "http://127.0.0.1:2", cortexv1.GPU{Index: 0, Kind: cortexv1.DeviceCUDA, MemoryFreeBytes: 20 * gi, MemoryTotalBytes: 24 * gi})

	// One Model served on a, none on the unhealthy b: impaired.
	putModel(t, ctx, ns, "served", []string{"served", "alias"}, nil, cortexv1.ModelPhaseReady,
		cortexv1.Replica{Node: "health-a", State: cortexv1.ReplicaReady, VRAMBytes: 3 * gi})
	r := waitHealth(t, base, func(r fleet.Report) bool {
		return len(r.Models) == 1 && r.Models[0].Ready == 1 && len(r.Neurons) == 2 && r.Neurons[1].Reason == cortexv1.ReasonHeartbeatStale
	})
	if r.Status != fleet.StatusImpaired || r.Nodes != (fleet.NodeCount{Healthy: 1, Total: 2}) || len(r.Unservable) != 0 {
		t.Fatalf("one node down, nothing on it: %+v", r)
	}
	if n := r.Neurons[0]; n.Name != "health-a" || !n.Ready || n.GPUs != 1 || n.MemoryFreeBytes != 10*gi || n.MemoryTotalBytes != 16*gi {
		t.Fatalf("neuron a: %+v", n)
	}
	if n := r.Neurons[1]; n.Name != "health-b" || n.Ready || n.Reason != cortexv1.ReasonHeartbeatStale {
		t.Fatalf("neuron b: %+v", n)
	}

	// /v1/models carries the locations, and the OpenAI SDK still parses
	// the list (keeping locations as an extra field).
	oc := openai.NewClient(option.WithBaseURL(base+"/v1/"), option.WithAPIKey("sk-ops"), option.WithMaxRetries(0))
	page, err := oc.Models.List(ctx)
	must(t, err)
	if len(page.Data) != 2 || page.Data[0].ID != "served" || page.Data[1].ID != "alias" {
		t.Fatalf("models: %+v", page.Data)
	}
	var locs []fleet.Location
	must(t, json.Unmarshal([]byte(page.Data[1].JSON.ExtraFields["locations"].Raw()), &locs))
	want := []fleet.Location{{Node: "health-a", State: "Ready", NodeReady: true, Memory: fleet.Memory{ModelBytes: 3 * gi, FreeBytes: 10 * gi, TotalBytes: 16 * gi}}}
	if fmt.Sprint(locs) != fmt.Sprint(want) {
		t.Fatalf("locations = %+v, want %+v", locs, want)
	}
	m, err := oc.Models.Get(ctx, "alias")
	must(t, err)
	if m.JSON.ExtraFields["locations"].Raw() != page.Data[1].JSON.ExtraFields["locations"].Raw() {
		t.Fatalf("/v1/models/alias locations %s", m.RawJSON())
	}

	// A Model whose only replica is on b and that may only run on b is
	// down: degraded, with the node-level and the model-level reason.
	putModel(t, ctx, ns, "pinned-to-b", nil, []string{"health-b"}, cortexv1.ModelPhaseReady,
		cortexv1.Replica{Node: "health-b", State: cortexv1.ReplicaReady, VRAMBytes: 2 * gi})
	r = waitHealth(t, base, func(r fleet.Report) bool { return len(r.Models) == 2 && len(r.Models[0].Locations) == 1 })
	wantIssues := []fleet.Unservable{
		{Model: ns + "/pinned-to-b", Reason: fleet.ReasonNoEligibleNode, Detail: "no Ready, uncordoned NeuronNode matches nodeNames health-b"},
		{Model: ns + "/pinned-to-b", Node: "health-b", Reason: fleet.ReasonNodeNotReady, Detail: "NeuronNode health-b is not Ready (HeartbeatStale): no heartbeat for 2m"},
	}
	if r.Status != fleet.StatusDegraded || fmt.Sprint(r.Unservable) != fmt.Sprint(wantIssues) {
		t.Fatalf("model down: %s %+v", r.Status, r.Unservable)
	}

	// b comes back: everything serves, and the idle capacity on b shows
	// as a place "served" could load.
	putNode(t, ctx, "health-b", true, "http://127.0.0.1:2", cortexv1.GPU{Index: 0, Kind: cortexv1.DeviceCUDA, MemoryFreeBytes: 20 * gi, MemoryTotalBytes: 24 * gi})
	r = waitHealth(t, base, func(r fleet.Report) bool { return r.Nodes.Healthy == 2 })
	if r.Status != fleet.StatusOK || len(r.Unservable) != 0 {
		t.Fatalf("all healthy: %+v", r)
	}
	list := getJSON[struct {
		Data []struct {
			ID        string           `json:"id"`
			Locations []fleet.Location `json:"locations"`
		} `json:"data"`
	}](t, base+"/v1/models")
	for _, d := range list.Data {
		if d.ID == "served" && (len(d.Locations) != 2 || d.Locations[1].Node != "health-b" || d.Locations[1].State != fleet.StatePlaceable || d.Locations[1].Memory.FreeBytes != 20*gi) {
			t.Fatalf("served locations: %+v", d.Locations)
		}
	}
}

// waitNoNeuronNodes waits for other tests' NeuronNodes to go: the report
// counts every NeuronNode in the cluster.
func waitNoNeuronNodes(t *testing.T, ctx context.Context) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var l cortexv1.NeuronNodeList
		must(t, env.Client.List(ctx, &l))
		if len(l.Items) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("NeuronNodes left by other tests: %d", len(l.Items))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// putNode creates or updates a NeuronNode with the status a neuron and
// the manager would write.
func putNode(t *testing.T, ctx context.Context, name string, ready bool, endpoint string, gpus ...cortexv1.GPU) {
	t.Helper()
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := env.Client.Get(ctx, client.ObjectKeyFromObject(nn), nn); err != nil {
		must(t, env.Client.Create(ctx, nn))
		t.Cleanup(func() { _ = env.Client.Delete(context.Background(), nn) })
	}
	cond := metav1.Condition{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatFresh, LastTransitionTime: metav1.Now()}
	if !ready {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, cortexv1.ReasonHeartbeatStale, "no heartbeat for 2m"
	}
	nn.Status.Endpoint = endpoint
	nn.Status.GPUs = gpus
	nn.Status.Conditions = []metav1.Condition{cond}
	must(t, env.Client.Status().Update(ctx, nn))
}

func putModel(t *testing.T, ctx context.Context, ns, name string, names, nodeNames []string, phase cortexv1.ModelPhase, replicas ...cortexv1.Replica) {
	t.Helper()
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	m.Spec.Source.URI = "https://models.example/" + name + ".gguf"
	m.Spec.ServedNames = names
	m.Spec.Placement.NodeNames = nodeNames
	m.Spec.Replicas = cortexv1.ReplicaRange{Min: 0, Max: 1}
	must(t, env.Client.Create(ctx, m))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), m) })
	m.Status.Phase = phase
	m.Status.Replicas = replicas
	m.Status.DesiredReplicas = int32(len(replicas))
	must(t, env.Client.Status().Update(ctx, m))
}

// waitHealth polls /health until cond holds (the gateway's cache follows
// the API server a little behind).
func waitHealth(t *testing.T, base string, cond func(fleet.Report) bool) fleet.Report {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := getJSON[fleet.Report](t, base+"/health")
		if cond(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health never got there: %+v", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func getJSON[T any](t *testing.T, url string) T {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer sk-ops")
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer func() { _ = resp.Body.Close() }()
	data, err := io.ReadAll(resp.Body)
	must(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, data)
	}
	var v T
	must(t, json.Unmarshal(data, &v))
	return v
}
