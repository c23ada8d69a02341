package neuron

import (
	"errors"
	"fmt"
	"slices"

	"github.com/helexa-ai/cortex/internal/devices"
)

// reserveLocked places m on devices and reserves its memory.
func (r *registry) reserveLocked(m *model, devs []devices.Device) error {
	mem := r.devMemLocked(devs, m)
	res, err := place(m.need, mem, m.req.Devices)
	if err != nil {
		var sf *shortfallError
		if errors.As(err, &sf) {
			return errInsufficientMemory(fmt.Sprintf("Model '%s' %s.", m.name, err.Error()))
		}
		return errInvalid("devices", "Invalid 'devices': %s.", err.Error())
	}
	m.reserved = res
	m.devices = make([]int, 0, len(res))
	for i := range res {
		m.devices = append(m.devices, i)
	}
	slices.Sort(m.devices)
	m.cpu = true
	for _, d := range mem {
		if _, ok := res[d.Index]; ok && d.Kind != devices.KindCPU {
			m.cpu = false
		}
	}
	return nil
}

// devMemLocked is each device's memory with every other model's
// reservation subtracted.
func (r *registry) devMemLocked(devs []devices.Device, except *model) []devMem {
	reserved := map[int]int64{}
	for _, m := range r.models {
		if m == except {
			continue
		}
		for i, b := range m.reserved {
			reserved[i] += b
		}
	}
	out := make([]devMem, 0, len(devs))
	for _, d := range devs {
		free := min(d.MemoryFree, d.MemoryTotal-reserved[d.Index])
		out = append(out, devMem{Index: d.Index, Kind: d.Kind, Total: d.MemoryTotal, Free: max(free, 0)})
	}
	return out
}
