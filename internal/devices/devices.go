// Package devices reports the compute devices of the host the neuron runs on:
// NVIDIA GPUs through NVML, or, on a host without them, one "cpu" device
// whose memory is host RAM. Memory figures are read fresh on every call so
// placement decisions see what the driver sees now.
package devices

import (
	"context"
	"fmt"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Device kinds.
const (
	KindCUDA = "cuda"
	KindCPU  = "cpu"
)

// Device is one device and its memory at the time it was read.
type Device struct {
	Index int
	Kind  string
	UUID  string
	Name  string
	// MemoryTotal is what the device offers (capped by Options.MemoryLimit
	// on a CPU host); MemoryFree and MemoryUsed are what the driver or the
	// kernel reports now, with MemoryFree never above MemoryTotal.
	MemoryTotal int64
	MemoryFree  int64
	MemoryUsed  int64
	// ComputeCapability is "major.minor" for a GPU.
	ComputeCapability string
	// Utilization is the recent compute utilization in percent.
	Utilization int
}

// API converts the device to the neuron API's form.
func (d Device) API() neuronapi.Device {
	return neuronapi.Device{
		Index:             d.Index,
		Kind:              d.Kind,
		UUID:              d.UUID,
		Name:              d.Name,
		MemoryTotal:       d.MemoryTotal,
		MemoryFree:        d.MemoryFree,
		ComputeCapability: d.ComputeCapability,
		Utilization:       d.Utilization,
	}
}

// Inventory lists the host's devices. Implementations are safe for
// concurrent use.
type Inventory interface {
	// Devices reads the devices and their current memory.
	Devices(ctx context.Context) ([]Device, error)
	// Close releases the driver handle.
	Close() error
}

// Options configures Open.
type Options struct {
	// MemoryLimit caps the memory a CPU host advertises (0: no cap), so a
	// neuron can share a host or a test can make a small host fill up.
	MemoryLimit int64
	// MeminfoPath is /proc/meminfo unless set (tests).
	MeminfoPath string
	// DisableNVML skips the NVML probe and reports the CPU device.
	DisableNVML bool
	// NVML is the NVML library to probe (nil: the system's libnvml); tests
	// pass a mock.
	NVML nvml.Interface
}

// Open returns the NVML inventory when the NVIDIA driver is present and
// reports at least one GPU, and the CPU inventory otherwise. It never fails
// because a driver is missing; it fails only when neither source works.
func Open(ctx context.Context, opts Options) (Inventory, error) {
	reason := "NVML disabled (--disable-nvml)"
	if !opts.DisableNVML {
		inv, err := openNVML(ctx, opts.NVML)
		if err == nil {
			return inv, nil
		}
		// No driver (or no GPU) is the normal case on CPU hosts; the
		// neuron says so once at start-up, with this reason.
		reason = "NVML unavailable: " + err.Error()
	}
	cpu := NewCPU(opts)
	cpu.noGPU = reason
	if _, err := cpu.Devices(ctx); err != nil {
		return nil, fmt.Errorf("reading host memory: %w", err)
	}
	return cpu, nil
}
