package devices

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the inventory of a host with NVIDIA GPUs.
type NVML struct {
	mu     sync.Mutex
	lib    nvml.Interface
	count  int
	closed bool
}

// OpenNVML initializes NVML through lib (nil: the system library). It fails
// with the NVML error when the driver is absent or reports no GPU.
func OpenNVML(ctx context.Context, lib nvml.Interface) (*NVML, error) {
	return openNVML(ctx, lib)
}

func openNVML(_ context.Context, lib nvml.Interface) (*NVML, error) {
	if lib == nil {
		lib = nvml.New()
	}
	if ret := lib.Init(); ret != nvml.SUCCESS {
		return nil, fmt.Errorf("initializing NVML: %w", nvmlError(lib, ret))
	}
	count, ret := lib.DeviceGetCount()
	if ret != nvml.SUCCESS {
		_ = lib.Shutdown()
		return nil, fmt.Errorf("counting GPUs: %w", nvmlError(lib, ret))
	}
	if count == 0 {
		_ = lib.Shutdown()
		return nil, errors.New("NVML reports no GPU")
	}
	return &NVML{lib: lib, count: count}, nil
}

// Devices queries every GPU. Memory is required; name, UUID, compute
// capability and utilization are best effort (some boards, MIG slices and
// vGPUs do not report them).
func (n *NVML) Devices(context.Context) ([]Device, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, errors.New("NVML inventory is closed")
	}
	out := make([]Device, 0, n.count)
	for i := range n.count {
		dev, ret := n.lib.DeviceGetHandleByIndex(i)
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("opening GPU %d: %w", i, nvmlError(n.lib, ret))
		}
		mem, ret := dev.GetMemoryInfo()
		if ret != nvml.SUCCESS {
			return nil, fmt.Errorf("reading memory of GPU %d: %w", i, nvmlError(n.lib, ret))
		}
		d := Device{
			Index:       i,
			Kind:        KindCUDA,
			MemoryTotal: clampInt64(mem.Total),
			MemoryFree:  clampInt64(mem.Free),
			MemoryUsed:  clampInt64(mem.Used),
		}
		d.MemoryFree = min(d.MemoryFree, d.MemoryTotal)
		if s, ret := dev.GetName(); ret == nvml.SUCCESS {
			d.Name = s
		}
		if s, ret := dev.GetUUID(); ret == nvml.SUCCESS {
			d.UUID = s
		}
		if major, minor, ret := dev.GetCudaComputeCapability(); ret == nvml.SUCCESS {
			d.ComputeCapability = fmt.Sprintf("%d.%d", major, minor)
		}
		if u, ret := dev.GetUtilizationRates(); ret == nvml.SUCCESS {
			d.Utilization = int(min(u.Gpu, 100))
		}
		out = append(out, d)
	}
	return out, nil
}

// Close shuts NVML down; it is idempotent.
func (n *NVML) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	n.closed = true
	if ret := n.lib.Shutdown(); ret != nvml.SUCCESS {
		return fmt.Errorf("shutting NVML down: %w", nvmlError(n.lib, ret))
	}
	return nil
}

// nvmlError turns a Return into an error. ErrorString is not callable when
// the library never loaded, so that case gets a fixed text.
func nvmlError(lib nvml.Interface, ret nvml.Return) error {
	if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
		return errors.New("NVML library not found (no NVIDIA driver)")
	}
	return fmt.Errorf("NVML error %d: %s", int32(ret), lib.ErrorString(ret))
}

func clampInt64(v uint64) int64 {
	if v > 1<<63-1 {
		return 1<<63 - 1
	}
	return int64(v)
}
