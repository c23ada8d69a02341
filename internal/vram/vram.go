// Package vram is the one definition of how a replica's memory need
// divides over the devices it spans. The manager's planner plans with it,
// and the neuron (and the simulated neuron of the tests) reserves with it,
// so a plan the planner believes fits is one the neuron accepts.
package vram

// Need is a replica's memory need. Split (weights and KV cache of the
// layers offloaded) divides among the devices the replica spans; Each
// (compute and output buffers) is needed on every one of them.
type Need struct {
	Split int64
	Each  int64
}

// Total is the memory the replica holds across devices devices (at least
// one).
func (n Need) Total(devices int) int64 { return n.Split + n.Each*int64(max(devices, 1)) }

// Shares divides n over devices with the given free memory: Split in
// proportion to each device's free memory (as llama.cpp's default tensor
// split divides layers), the last device taking what rounding leaves, plus
// Each on every device. It reports whether every share fits its device;
// with no free memory at all nothing fits.
func Shares(n Need, free []int64) ([]int64, bool) {
	var sum int64
	for _, f := range free {
		sum += max(f, 0)
	}
	if sum <= 0 || len(free) == 0 {
		return nil, false
	}
	out := make([]int64, len(free))
	var assigned int64
	ok := true
	for i, f := range free {
		share := int64(float64(n.Split) * (float64(max(f, 0)) / float64(sum)))
		if i == len(free)-1 {
			share = n.Split - assigned
		}
		assigned += share
		out[i] = share + n.Each
		if out[i] > f {
			ok = false
		}
	}
	return out, ok
}

// Fits reports whether n fits on devices with the given free memory: what
// Shares reports, computed without allocating (the planner asks it for
// every candidate device set).
func Fits(n Need, free []int64) bool {
	var sum int64
	for _, f := range free {
		sum += max(f, 0)
	}
	if sum <= 0 || len(free) == 0 {
		return false
	}
	var assigned int64
	for i, f := range free {
		share := int64(float64(n.Split) * (float64(max(f, 0)) / float64(sum)))
		if i == len(free)-1 {
			share = n.Split - assigned
		}
		assigned += share
		if share+n.Each > f {
			return false
		}
	}
	return true
}
