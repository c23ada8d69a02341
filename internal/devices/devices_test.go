package devices

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"
)

func TestParseMeminfo(t *testing.T) {
	tests := []struct {
		name       string
		in         string
		total, av  int64
		wantErrStr bool
	}{
		{
			name:  "modern kernel",
			in:    "MemTotal:       16384 kB\nMemFree:         1024 kB\nMemAvailable:    8192 kB\nBuffers: 1 kB\n",
			total: 16384 * 1024, av: 8192 * 1024,
		},
		{
			name:  "old kernel without MemAvailable",
			in:    "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\n",
			total: 1000 * 1024, av: 350 * 1024,
		},
		{
			name:  "available above total is clamped",
			in:    "MemTotal: 10 kB\nMemAvailable: 20 kB\n",
			total: 10 * 1024, av: 10 * 1024,
		},
		{
			name:  "garbage lines are skipped",
			in:    "nonsense\nMemTotal: x kB\nMemTotal: 4 kB\n: 3\nMemAvailable: -5 kB\nMemFree: 1 kB\n",
			total: 4 * 1024, av: 1024,
		},
		{name: "no MemTotal", in: "MemFree: 1 kB\n", wantErrStr: true},
		{name: "empty", in: "", wantErrStr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			total, av, err := parseMeminfo([]byte(tt.in))
			if tt.wantErrStr {
				if err == nil {
					t.Fatalf("want error, got total=%d avail=%d", total, av)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if total != tt.total || av != tt.av {
				t.Fatalf("got total=%d avail=%d, want %d %d", total, av, tt.total, tt.av)
			}
		})
	}
}

func writeMeminfo(t *testing.T, totalKB, availKB int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "meminfo")
	data := []byte("MemTotal: " + strconv.Itoa(totalKB) + " kB\nMemAvailable: " + strconv.Itoa(availKB) + " kB\n")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCPUMemoryLimit(t *testing.T) {
	p := writeMeminfo(t, 8<<20, 6<<20) // 8 GiB total, 6 GiB available
	tests := []struct {
		name             string
		limit            int64
		wantTotal, wFree int64
	}{
		{"no limit", 0, 8 << 30, 6 << 30},
		{"limit above total", 16 << 30, 8 << 30, 6 << 30},
		{"limit between available and total", 7 << 30, 7 << 30, 6 << 30},
		{"limit below available", 1 << 30, 1 << 30, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs, err := NewCPU(Options{MemoryLimit: tt.limit, MeminfoPath: p}).Devices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != 1 {
				t.Fatalf("want one device, got %d", len(devs))
			}
			d := devs[0]
			if d.Kind != KindCPU || d.Index != 0 {
				t.Fatalf("device = %+v", d)
			}
			if d.MemoryTotal != tt.wantTotal || d.MemoryFree != tt.wFree || d.MemoryUsed != tt.wantTotal-tt.wFree {
				t.Fatalf("total=%d free=%d used=%d, want %d %d", d.MemoryTotal, d.MemoryFree, d.MemoryUsed, tt.wantTotal, tt.wFree)
			}
		})
	}
}

func TestCPUMissingMeminfo(t *testing.T) {
	_, err := NewCPU(Options{MeminfoPath: filepath.Join(t.TempDir(), "absent")}).Devices(context.Background())
	if err == nil {
		t.Fatal("want error for a missing meminfo")
	}
}

func fakeGPU(name, uuid string, total, free uint64) *mock.Device {
	return &mock.Device{
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: total, Free: free, Used: total - free}, nvml.SUCCESS
		},
		GetNameFunc: func() (string, nvml.Return) { return name, nvml.SUCCESS },
		GetUUIDFunc: func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
		GetCudaComputeCapabilityFunc: func() (int, int, nvml.Return) {
			return 9, 0, nvml.SUCCESS
		},
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 42}, nvml.SUCCESS
		},
	}
}

func fakeNVML(devs ...nvml.Device) *mock.Interface {
	return &mock.Interface{
		InitFunc:           func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
		ErrorStringFunc:    func(r nvml.Return) string { return "mock error" },
		DeviceGetCountFunc: func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i < 0 || i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

func TestNVMLInventory(t *testing.T) {
	gpu1 := fakeGPU("NVIDIA H100 80GB HBM3", "GPU-b", 80<<30, 10<<30)
	// A MIG slice or vGPU may not report utilization or compute capability;
	// the device must still be listed with its memory.
	gpu1.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, nvml.ERROR_NOT_SUPPORTED }
	gpu1.GetCudaComputeCapabilityFunc = func() (int, int, nvml.Return) { return 0, 0, nvml.ERROR_NOT_SUPPORTED }
	lib := fakeNVML(fakeGPU("NVIDIA H100 80GB HBM3", "GPU-a", 80<<30, 70<<30), gpu1)
	inv, err := Open(context.Background(), Options{NVML: lib, MemoryLimit: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	devs, err := inv.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 {
		t.Fatalf("want 2 devices, got %+v", devs)
	}
	want0 := Device{Index: 0, Kind: KindCUDA, UUID: "GPU-a", Name: "NVIDIA H100 80GB HBM3",
		MemoryTotal: 80 << 30, MemoryFree: 70 << 30, MemoryUsed: 10 << 30, ComputeCapability: "9.0", Utilization: 42}
	if devs[0] != want0 {
		t.Errorf("device 0 = %+v, want %+v", devs[0], want0)
	}
	if devs[1].Index != 1 || devs[1].UUID != "GPU-b" || devs[1].ComputeCapability != "" || devs[1].Utilization != 0 || devs[1].MemoryFree != 10<<30 {
		t.Errorf("device 1 = %+v", devs[1])
	}
	if got := devs[0].API(); got.UUID != "GPU-a" || got.MemoryFree != 70<<30 || got.Kind != "cuda" {
		t.Errorf("API() = %+v", got)
	}
	if err := inv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := inv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := inv.Devices(context.Background()); err == nil {
		t.Fatal("Devices after Close must fail")
	}
	if n := len(lib.ShutdownCalls()); n != 1 {
		t.Fatalf("Shutdown called %d times, want 1", n)
	}
}

func TestNVMLMemoryErrorFails(t *testing.T) {
	gpu := fakeGPU("x", "GPU-x", 1, 1)
	gpu.GetMemoryInfoFunc = func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, nvml.ERROR_GPU_IS_LOST }
	inv, err := OpenNVML(context.Background(), fakeNVML(gpu))
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	if _, err := inv.Devices(context.Background()); err == nil {
		t.Fatal("want an error when a GPU's memory cannot be read")
	}
}

func TestOpenFallsBackToCPU(t *testing.T) {
	meminfo := writeMeminfo(t, 4<<20, 3<<20)
	tests := []struct {
		name string
		lib  *mock.Interface
	}{
		{"library not found", &mock.Interface{InitFunc: func() nvml.Return { return nvml.ERROR_LIBRARY_NOT_FOUND }}},
		{"driver not loaded", &mock.Interface{
			InitFunc:        func() nvml.Return { return nvml.ERROR_DRIVER_NOT_LOADED },
			ErrorStringFunc: func(nvml.Return) string { return "driver not loaded" },
		}},
		{"no GPU", fakeNVML()},
		{"count fails", &mock.Interface{
			InitFunc:           func() nvml.Return { return nvml.SUCCESS },
			ShutdownFunc:       func() nvml.Return { return nvml.SUCCESS },
			ErrorStringFunc:    func(nvml.Return) string { return "unknown" },
			DeviceGetCountFunc: func() (int, nvml.Return) { return 0, nvml.ERROR_UNKNOWN },
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv, err := Open(context.Background(), Options{NVML: tt.lib, MeminfoPath: meminfo, MemoryLimit: 2 << 30})
			if err != nil {
				t.Fatal(err)
			}
			defer inv.Close()
			devs, err := inv.Devices(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(devs) != 1 || devs[0].Kind != KindCPU || devs[0].MemoryTotal != 2<<30 {
				t.Fatalf("devices = %+v", devs)
			}
			if r := inv.(*CPU).NoGPUReason(); !strings.HasPrefix(r, "NVML unavailable: ") {
				t.Fatalf("NoGPUReason = %q", r)
			}
		})
	}
	inv, err := Open(context.Background(), Options{DisableNVML: true, MeminfoPath: meminfo})
	if err != nil {
		t.Fatal(err)
	}
	if r := inv.(*CPU).NoGPUReason(); r != "NVML disabled (--disable-nvml)" {
		t.Fatalf("NoGPUReason with DisableNVML = %q", r)
	}
}

// TestOpenSystem runs the real probe: on a host without a driver it must
// report the CPU, on a GPU host the GPUs; either way it must not panic.
func TestOpenSystem(t *testing.T) {
	inv, err := Open(context.Background(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer inv.Close()
	devs, err := inv.Devices(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) == 0 {
		t.Fatal("no device reported")
	}
	for _, d := range devs {
		if d.MemoryTotal <= 0 || d.MemoryFree < 0 || d.MemoryFree > d.MemoryTotal {
			t.Errorf("implausible memory on %+v", d)
		}
	}
	t.Logf("devices: %+v", devs)
}

func TestStatic(t *testing.T) {
	s := NewStatic(Device{Index: 0, Kind: KindCPU, MemoryTotal: 10, MemoryFree: 5})
	devs, _ := s.Devices(context.Background())
	devs[0].MemoryFree = 0 // callers get a copy
	again, _ := s.Devices(context.Background())
	if again[0].MemoryFree != 5 {
		t.Fatal("Static leaked its slice")
	}
	s.SetError(errors.New("boom"))
	if _, err := s.Devices(context.Background()); err == nil {
		t.Fatal("want the injected error")
	}
	s.Set(Device{Index: 1})
	if devs, err := s.Devices(context.Background()); err != nil || devs[0].Index != 1 {
		t.Fatalf("after Set: %v %v", devs, err)
	}
}
