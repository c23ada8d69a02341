package devices

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
)

// CPU is the inventory of a host without GPUs: one device of kind "cpu"
// whose memory is host RAM.
type CPU struct {
	limit       int64
	meminfoPath string
	name        string
	// noGPU is why Open fell back to the CPU.
	noGPU string
}

// NoGPUReason says why the host reports no GPU (NVML missing, failing or
// disabled); empty for a CPU inventory made with NewCPU.
func (c *CPU) NoGPUReason() string { return c.noGPU }

// NewCPU returns the CPU inventory.
func NewCPU(opts Options) *CPU {
	p := opts.MeminfoPath
	if p == "" {
		p = "/proc/meminfo"
	}
	return &CPU{limit: opts.MemoryLimit, meminfoPath: p, name: cpuName()}
}

// Devices reads /proc/meminfo. MemAvailable (not MemFree) is what the
// kernel could hand out without swapping, page cache included.
func (c *CPU) Devices(context.Context) ([]Device, error) {
	data, err := os.ReadFile(c.meminfoPath)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", c.meminfoPath, err)
	}
	total, avail, err := parseMeminfo(data)
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", c.meminfoPath, err)
	}
	if c.limit > 0 && c.limit < total {
		total = c.limit
	}
	avail = min(avail, total)
	return []Device{{
		Index:       0,
		Kind:        KindCPU,
		Name:        c.name,
		MemoryTotal: total,
		MemoryFree:  avail,
		MemoryUsed:  total - avail,
	}}, nil
}

// Close does nothing.
func (c *CPU) Close() error { return nil }

// parseMeminfo returns MemTotal and MemAvailable in bytes. Kernels before
// 3.14 lack MemAvailable; MemFree+Buffers+Cached approximates it there.
func parseMeminfo(data []byte) (total, avail int64, err error) {
	fields := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) == 0 {
			continue
		}
		v, perr := strconv.ParseInt(f[0], 10, 64)
		if perr != nil || v < 0 {
			continue
		}
		if len(f) > 1 && f[1] == "kB" {
			v *= 1024
		}
		fields[name] = v
	}
	total, ok := fields["MemTotal"]
	if !ok || total <= 0 {
		return 0, 0, errors.New("no MemTotal")
	}
	avail, ok = fields["MemAvailable"]
	if !ok {
		avail = fields["MemFree"] + fields["Buffers"] + fields["Cached"]
	}
	return total, min(avail, total), nil
}

// cpuName is the processor's model name, for the device's Name; it falls
// back to the architecture.
func cpuName() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && strings.TrimSpace(k) == "model name" {
				if v = strings.TrimSpace(v); v != "" {
					return v
				}
			}
		}
	}
	return runtime.GOARCH + " CPU"
}
