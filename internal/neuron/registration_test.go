package neuron

import (
	"context"
	"net/http"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/testenv"
)

// TestRegistration runs against a real kube-apiserver (envtest); it fails,
// never skips, when the binaries are missing.
func TestRegistration(t *testing.T) {
	if testing.Short() {
		t.Skip("real API server: not run with -short")
	}
	env, err := testenv.Start()
	if err != nil {
		t.Fatalf("starting the API server: %v", err)
	}
	t.Cleanup(func() { _ = env.Stop() })
	c := env.Client
	ctx := context.Background()

	gpus := devices.NewStatic(
		devices.Device{Index: 0, Kind: devices.KindCUDA, UUID: "GPU-0", Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 << 30, MemoryFree: 79 << 30, ComputeCapability: "9.0", Utilization: 3},
		devices.Device{Index: 1, Kind: devices.KindCUDA, UUID: "GPU-1", Name: "NVIDIA H100 80GB HBM3", MemoryTotal: 80 << 30, MemoryFree: 80 << 30, ComputeCapability: "9.0"},
	)
	h := newHarness(t, withInventory(gpus), withConfig(func(cfg *Config) {
		cfg.DisableRegistration = false
		cfg.Kubeconfig = env.Kubeconfig
		cfg.NodeName = "gpu-host-1"
		cfg.PodIP = "10.1.2.3"
		cfg.HeartbeatInterval = time.Hour // only state changes write, so the test sees each write's cause
	}))
	get := func() *cortexv1.NeuronNode {
		t.Helper()
		nn := &cortexv1.NeuronNode{}
		if err := c.Get(ctx, client.ObjectKey{Name: "gpu-host-1"}, nn); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			t.Fatal(err)
		}
		return nn
	}
	var nn *cortexv1.NeuronNode
	h.waitFor("registration", func() bool { nn = get(); return nn != nil && nn.Status.LastHeartbeatTime != nil })

	wantLabels := map[string]string{
		cortexv1.LabelHostname: "gpu-host-1", cortexv1.LabelGPUProduct: "NVIDIA-H100-80GB-HBM3", cortexv1.LabelGPUCount: "2",
	}
	for k, v := range wantLabels {
		if nn.Labels[k] != v {
			t.Errorf("label %s = %q, want %q", k, nn.Labels[k], v)
		}
	}
	st := nn.Status
	_, port, _ := splitHostPort(h.s.Addr())
	if st.Endpoint != "http://10.1.2.3:"+port || st.NodeName != "gpu-host-1" || st.GPUCount != 2 || st.ModelCount != 0 ||
		len(st.GPUs) != 2 || st.GPUs[0].UUID != "GPU-0" || st.GPUs[0].MemoryTotalBytes != 80<<30 || st.GPUs[0].ComputeCapability != "9.0" ||
		st.GPUs[0].Kind != cortexv1.DeviceCUDA || st.Engine.Version != "fake" || st.VRAM != "159.0Gi/160.0Gi" {
		t.Fatalf("status %+v", st)
	}

	// The manager owns conditions and ready; a user adds a label.
	nn.Status.Ready = "True"
	meta.SetStatusCondition(&nn.Status.Conditions, metav1.Condition{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatFresh, Message: "fresh"})
	if err := c.Status().Update(ctx, nn); err != nil {
		t.Fatal(err)
	}
	nn.Labels["team"] = "ml"
	if err := c.Update(ctx, nn); err != nil {
		t.Fatal(err)
	}

	// A model changing state is written at once.
	gl := -1
	h.load(neuronapi.LoadRequest{Name: "ns/tiny", Source: neuronapi.Source{URI: tinyModel(t, 1)}, Engine: neuronapi.EngineConfig{GPULayers: &gl}})
	h.waitFor("the model in status", func() bool {
		nn = get()
		return len(nn.Status.Models) == 1 && nn.Status.Models[0].State == cortexv1.ReplicaReady
	})
	rm := nn.Status.Models[0]
	if rm.Name != "ns/tiny" || rm.VRAMBytes <= 0 || len(rm.Devices) != 1 || rm.Devices[0] != 1 || nn.Status.ModelCount != 1 {
		t.Fatalf("resident model %+v (device 1 has the most free memory)", rm)
	}
	if nn.Status.Ready != "True" || meta.FindStatusCondition(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady) == nil {
		t.Fatalf("the neuron touched manager-owned status: ready=%q conditions=%v", nn.Status.Ready, nn.Status.Conditions)
	}
	if nn.Labels["team"] != "ml" {
		t.Fatal("the neuron removed a user's label")
	}

	// A deleted NeuronNode is recreated by the next write.
	deleted := nn.UID
	if err := c.Delete(ctx, nn); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := h.do(http.MethodPost, neuronapi.PathUnload, neuronapi.UnloadRequest{Name: "ns/tiny"}); code != 200 {
		t.Fatalf("unload %d", code)
	}
	h.waitFor("re-registration", func() bool {
		nn = get()
		return nn != nil && nn.UID != deleted && len(nn.Status.Models) == 0 && nn.Labels[cortexv1.LabelGPUCount] == "2"
	})

	// Shutdown writes a last status.
	h.load(neuronapi.LoadRequest{Name: "ns/tiny", Source: neuronapi.Source{URI: tinyModel(t, 1)}, Engine: neuronapi.EngineConfig{GPULayers: &gl}})
	h.cancel()
	if err := h.s.Wait(); err != nil {
		t.Fatal(err)
	}
	if !h.s.reggr.finalWritten.Load() {
		t.Fatal("no final status write at shutdown")
	}
	if nn = get(); len(nn.Status.Models) != 0 || nn.Status.ModelCount != 0 {
		t.Fatalf("models after shutdown: %+v", nn.Status.Models)
	}
}

func splitHostPort(s string) (string, string, error) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == ':' {
			return s[:i], s[i+1:], nil
		}
	}
	return s, "", nil
}
