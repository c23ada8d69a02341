package neuron

import (
	"path/filepath"
	"slices"
	"strings"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/ggmllibs"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// inspectCompute reads, once at start, what computes on this host: the CPU
// backend in use, the backend libraries loaded, and when no GPU serves,
// why. It fills the Discovery fields that say so.
func inspectCompute(inv devices.Inventory, cfg Config) neuronapi.Discovery {
	rep := ggmllibs.Inspect(ggmllibs.SearchDirs(cfg.LibraryPath))
	out := neuronapi.Discovery{CPUBackend: rep.CPUBackend}
	for _, l := range rep.Loaded {
		out.Libraries = append(out.Libraries, filepath.Base(l))
	}
	var reasons []string
	if r, ok := inv.(interface{ NoGPUReason() string }); ok && r.NoGPUReason() != "" {
		reasons = append(reasons, r.NoGPUReason())
	}
	if !slices.Contains(cfg.Engine.Backends(), devices.KindCUDA) {
		if rep.CUDANotLoaded() {
			reasons = append(reasons, "libggml-cuda.so is present but did not load (no CUDA driver: libcuda.so.1 or the CUDA runtime missing)")
		} else {
			reasons = append(reasons, "no CUDA backend library (libggml-cuda.so) in the library path")
		}
	}
	out.NoGPU = strings.Join(reasons, "; ")
	return out
}
