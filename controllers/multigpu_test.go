package controllers_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/utils/ptr"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neurontest"
)

// Multi-GPU plans against simulated neurons that reserve as the real one
// does (internal/vram): the compute buffers are needed on every device a
// replica spans. The manager counts them the same way, so it never sends a
// plan the neuron must refuse, and it places what fits exactly.
func TestMultiGPUPlansMatchWhatTheNeuronReserves(t *testing.T) {
	f := newFixture(t)
	const giB = gib
	frac := func(g float64) int64 { return int64(g * float64(giB)) }
	// Every estimate: 17 GiB on one device, of which 1 GiB of compute
	// buffers needed on each device the replica spans.
	cfg := func(devices ...int64) neurontest.Config {
		return neurontest.Config{Devices: devices, DefaultSize: 17 * giB, ComputeBytes: giB}
	}
	// Two GPUs of 8.8 GiB: 17.6 GiB in all, more than 17, less than the
	// 18 GiB the neuron reserves for the replica split over both.
	tight := f.addNeuronWith("tight", cfg(frac(8.8), frac(8.8)))
	f.startManager()
	now := time.Now()
	f.apply("two", demanded(now))
	eventually(t, 30*time.Second, "two to be Unschedulable for the 18 GiB a 2-GPU replica needs", func() (bool, string) {
		m := f.get("two")
		c := condition(m, cortexv1.ModelConditionScheduled)
		return m.Status.Phase == cortexv1.ModelPhaseUnschedulable && c != nil && strings.Contains(c.Message, "needs 18.0 GiB"), describe(m)
	})
	if n := tight.Loads(f.key("two")) + tight.Refused(); n != 0 {
		t.Fatalf("the manager sent %d load orders the neuron must refuse", n)
	}

	// Two GPUs of 9 GiB hold it: 8 GiB of the split and 1 GiB of buffers
	// on each.
	roomy := f.addNeuronWith("roomy", cfg(9*giB, 9*giB))
	m := f.waitPhase("two", cortexv1.ModelPhaseReady, 30*time.Second)
	if len(m.Status.Replicas) != 1 || m.Status.Replicas[0].Node != f.label+"-roomy" ||
		!slices.Equal(m.Status.Replicas[0].Devices, []int32{0, 1}) || m.Status.Replicas[0].VRAMBytes != 18*giB {
		t.Fatalf("two: %s %+v", describe(m), m.Status.Replicas)
	}
	resp := roomy.Snapshot()
	if len(resp.Models) != 1 || !slices.Equal(resp.Models[0].DeviceBytes, []int64{9 * giB, 9 * giB}) {
		t.Fatalf("the neuron reserved %+v", resp.Models)
	}

	// Four GPUs: 31 GiB on one device, 34 GiB over four; 8.5 GiB each
	// holds it exactly.
	quad := f.addNeuronWith("quad", neurontest.Config{Devices: []int64{frac(8.5), frac(8.5), frac(8.5), frac(8.5)},
		DefaultSize: 31 * giB, ComputeBytes: giB})
	f.apply("four", demanded(now), func(m *cortexv1.Model) { m.Spec.Placement.Devices = ptr.To[int32](4) })
	m = f.waitPhase("four", cortexv1.ModelPhaseReady, 30*time.Second)
	if len(m.Status.Replicas) != 1 || m.Status.Replicas[0].Node != f.label+"-quad" || len(m.Status.Replicas[0].Devices) != 4 {
		t.Fatalf("four: %s %+v", describe(m), m.Status.Replicas)
	}
	if n := tight.Refused() + roomy.Refused() + quad.Refused(); n != 0 {
		t.Fatalf("%d load orders refused for memory", n)
	}
}
