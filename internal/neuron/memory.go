package neuron

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/helexa-ai/cortex/internal/units"
)

// devMem is one device's memory as placement sees it: Free already has the
// reservations of models loading or loaded subtracted.
type devMem struct {
	Index int
	Kind  string
	Total int64
	Free  int64
}

// need is a model's memory need. Split (weights and KV cache of the layers
// offloaded) divides among the devices a model spans, in proportion to
// their free memory, as llama.cpp's default tensor split does; Each
// (compute and output buffers) is needed on every device.
type need struct {
	Split int64
	Each  int64
}

func (n need) total(devices int) int64 { return n.Split + n.Each*int64(max(devices, 1)) }

// place picks devices for a model and what to reserve on each. With
// requested devices it checks they fit; otherwise it prefers the single
// device with the most free memory that fits, then the fewest devices
// (most free first) that fit together.
func place(n need, devs []devMem, requested []int) (map[int]int64, error) {
	byIndex := map[int]devMem{}
	for _, d := range devs {
		byIndex[d.Index] = d
	}
	if len(requested) > 0 {
		chosen := make([]devMem, 0, len(requested))
		for _, i := range requested {
			d, ok := byIndex[i]
			if !ok {
				return nil, fmt.Errorf("device %d does not exist on this host (devices: %s)", i, indexList(devs))
			}
			chosen = append(chosen, d)
		}
		if r, ok := split(n, chosen); ok {
			return r, nil
		}
		return nil, shortfall(n, chosen)
	}
	if len(devs) == 0 {
		return nil, fmt.Errorf("this host reports no device")
	}
	sorted := slices.Clone(devs)
	sort.SliceStable(sorted, func(a, b int) bool { return sorted[a].Free > sorted[b].Free })
	for k := 1; k <= len(sorted); k++ {
		if r, ok := split(n, sorted[:k]); ok {
			return r, nil
		}
	}
	return nil, shortfall(n, sorted)
}

// split divides n over devs in proportion to their free memory and reports
// whether every share fits.
func split(n need, devs []devMem) (map[int]int64, bool) {
	var free int64
	for _, d := range devs {
		free += max(d.Free, 0)
	}
	if free <= 0 {
		return nil, false
	}
	out := make(map[int]int64, len(devs))
	var assigned int64
	for i, d := range devs {
		share := int64(float64(n.Split) * float64(max(d.Free, 0)) / float64(free))
		if i == len(devs)-1 {
			share = n.Split - assigned // rounding goes to the last device
		}
		assigned += share
		r := share + n.Each
		if r > d.Free {
			return nil, false
		}
		out[d.Index] = r
	}
	return out, true
}

// shortfallError says a model does not fit in the free memory of the
// devices it may use. A load answers it with insufficient_memory; every
// other placement error is a bad request.
type shortfallError struct {
	need int64
	devs []devMem
}

func shortfall(n need, devs []devMem) error {
	return &shortfallError{need: n.total(len(devs)), devs: devs}
}

func (e *shortfallError) Error() string {
	parts := make([]string, 0, len(e.devs))
	for _, d := range e.devs {
		parts = append(parts, fmt.Sprintf("device %d has %s free", d.Index, units.IECBytes(max(d.Free, 0))))
	}
	return fmt.Sprintf("needs %s, %s", units.IECBytes(e.need), strings.Join(parts, ", "))
}

func indexList(devs []devMem) string {
	s := make([]string, 0, len(devs))
	for _, d := range devs {
		s = append(s, fmt.Sprint(d.Index))
	}
	return strings.Join(s, ", ")
}
