package neuron

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/engine/ggmllibs"
)

func TestInspectCompute(t *testing.T) {
	meminfo := filepath.Join(t.TempDir(), "meminfo")
	if err := os.WriteFile(meminfo, []byte("MemTotal: 4096 kB\nMemAvailable: 2048 kB\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	noNVML, err := devices.Open(context.Background(), devices.Options{DisableNVML: true, MeminfoPath: meminfo})
	if err != nil {
		t.Fatal(err)
	}
	withCUDA := t.TempDir()
	if err := os.WriteFile(filepath.Join(withCUDA, "libggml-cuda.so"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	gpu := devices.NewStatic(devices.Device{Kind: devices.KindCUDA, MemoryTotal: 1 << 30, MemoryFree: 1 << 30})

	tests := []struct {
		name     string
		inv      devices.Inventory
		backends []string
		libPath  string
		noGPU    []string // substrings, in order; none: no GPU message
	}{
		{"cpu host, no library", noNVML, []string{"cpu"}, t.TempDir(), []string{"NVML disabled", "no CUDA backend library"}},
		{"cpu host, cuda library present", noNVML, []string{"cpu"}, withCUDA, []string{"NVML disabled", "libggml-cuda.so is present but did not load"}},
		{"gpu host, cuda loaded", gpu, []string{"cpu", "cuda"}, withCUDA, nil},
		{"gpu host, no cuda library", gpu, []string{"cpu"}, t.TempDir(), []string{"no CUDA backend library"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Engine: enginefake.New(enginefake.Options{Backends: tc.backends}), LibraryPath: tc.libPath}
			d := inspectCompute(tc.inv, cfg)
			if d.CPUBackend != ggmllibs.BuiltIn {
				t.Errorf("CPUBackend = %q, want %q (a test binary loads no variant)", d.CPUBackend, ggmllibs.BuiltIn)
			}
			if len(tc.noGPU) == 0 {
				if d.NoGPU != "" {
					t.Fatalf("NoGPU = %q, want empty", d.NoGPU)
				}
				return
			}
			rest := d.NoGPU
			for _, want := range tc.noGPU {
				i := strings.Index(rest, want)
				if i < 0 {
					t.Fatalf("NoGPU = %q, want %q in it (in order: %q)", d.NoGPU, want, tc.noGPU)
				}
				rest = rest[i+len(want):]
			}
		})
	}
}
