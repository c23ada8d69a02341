package gateway

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/fleet"
)

func TestHealthBeforeTheCacheSyncs(t *testing.T) {
	g, err := New(Config{AllowAnonymous: true}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g.Handler(testr.New(t)))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/health")
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503 before the cache synced", resp.StatusCode)
	}
}

// Evaluate applies the catalog's rules: a Ready replica on a node without
// an endpoint does not route, a cordoned node is not eligible, and a
// terminating Model is listed but counts for nothing.
func TestEvaluateUsesTheRoutingRules(t *testing.T) {
	a := *readyNode("a", "")
	b := *readyNode("b", "http://b")
	b.Spec.Unschedulable = true
	served := cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"}}
	served.Status.Replicas = []cortexv1.Replica{{Node: "a", State: cortexv1.ReplicaReady}, {Node: "b", State: cortexv1.ReplicaReady}}
	now := metav1.Now()
	gone := cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "gone", DeletionTimestamp: &now, Finalizers: []string{"x"}}}
	gone.Status.Phase = cortexv1.ModelPhaseFailed
	r := Evaluate([]cortexv1.Model{served, gone}, []cortexv1.NeuronNode{a, b})
	if r.Status != fleet.StatusOK || len(r.Models) != 2 {
		t.Fatalf("report: %+v", r)
	}
	if g := r.Models[0]; g.Model != "ns/gone" || g.Phase != "Terminating" {
		t.Fatalf("terminating: %+v", g)
	}
	m := r.Models[1]
	if m.Ready != 1 || len(m.Locations) != 2 {
		t.Fatalf("routable only on b, placeable nowhere new: %+v", m)
	}
}

// BenchmarkFleetReport measures one /health (and /v1/models) computation:
// every Model with two replicas, every node eligible for every Model.
func BenchmarkFleetReport(b *testing.B) {
	for _, size := range []struct{ nodes, models int }{{10, 50}, {100, 500}} {
		b.Run(fmt.Sprintf("nodes=%d/models=%d", size.nodes, size.models), func(b *testing.B) {
			c := NewCatalog()
			for i := range size.nodes {
				nn := readyNode(fmt.Sprintf("node-%03d", i), fmt.Sprintf("http://10.0.0.%d:13131", i))
				nn.Status.GPUs = []cortexv1.GPU{{Index: 0, MemoryFreeBytes: 10 << 30, MemoryTotalBytes: 80 << 30}}
				c.UpsertNode(nn)
			}
			for i := range size.models {
				m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: fmt.Sprintf("model-%03d", i)}}
				m.Status.Replicas = []cortexv1.Replica{
					{Node: fmt.Sprintf("node-%03d", i%size.nodes), State: cortexv1.ReplicaReady, VRAMBytes: 4 << 30},
					{Node: fmt.Sprintf("node-%03d", (i+1)%size.nodes), State: cortexv1.ReplicaLoading},
				}
				c.UpsertModel(m)
			}
			b.ReportAllocs()
			for b.Loop() {
				if r := c.FleetReport(); len(r.Models) != size.models {
					b.Fatal(len(r.Models))
				}
			}
		})
	}
}

// A replica's first device reaches the balancer, which counts the load of
// every Model on one device together.
func TestCatalogReplicasNameTheirDevice(t *testing.T) {
	c := NewCatalog()
	c.UpsertNode(readyNode("a", "http://a:13131"))
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"}}
	m.Status.Replicas = []cortexv1.Replica{{Node: "a", State: cortexv1.ReplicaReady, Devices: []int32{3, 4}}}
	c.UpsertModel(m)
	cpu := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "cpu"}}
	cpu.Status.Replicas = []cortexv1.Replica{{Node: "a", State: cortexv1.ReplicaReady}}
	c.UpsertModel(cpu)
	if got, want := c.Replicas("ns/m"), []Replica{{Node: "a", Endpoint: "http://a:13131", Device: "3"}}; !slices.Equal(got, want) {
		t.Fatalf("replicas %+v, want %+v", got, want)
	}
	if got, want := c.Replicas("ns/cpu"), []Replica{{Node: "a", Endpoint: "http://a:13131"}}; !slices.Equal(got, want) {
		t.Fatalf("replicas %+v, want %+v", got, want)
	}
}
