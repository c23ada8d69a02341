package neuron

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/helexa-ai/cortex/internal/units"
	"github.com/helexa-ai/cortex/internal/vram"
)

// devMem is one device's memory as placement sees it: Free already has the
// reservations of models loading or loaded subtracted.
type devMem struct {
	Index int
	Kind  string
	Total int64
	Free  int64
}

// need is a model's memory need: Split divides among the devices a model
// spans, Each is needed on every one (internal/vram, the rule the
// manager's planner uses too).
type need = vram.Need

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

// split divides n over devs by the fleet's one rule (vram.Shares: Split
// in proportion to free memory, Each on every device) and reports whether
// every share fits.
func split(n need, devs []devMem) (map[int]int64, bool) {
	free := make([]int64, len(devs))
	for i, d := range devs {
		free[i] = d.Free
	}
	shares, ok := vram.Shares(n, free)
	if !ok {
		return nil, false
	}
	out := make(map[int]int64, len(devs))
	for i, d := range devs {
		out[d.Index] = shares[i]
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
	return &shortfallError{need: n.Total(len(devs)), devs: devs}
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
