package sched

// CommonPrefix is the number of leading tokens a and b share.
func CommonPrefix(a, b []int) int {
	n := min(len(a), len(b))
	for i := 0; i < n; i++ {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}

// Cached is what slot choice needs to know of a free sequence.
type Cached interface {
	// CachedTokens are the tokens the sequence's KV cache holds.
	CachedTokens() []int
	// LastUse orders sequences by their last assignment.
	LastUse() uint64
}

// PickSlot returns the index in free of the sequence to give a prompt: the
// one whose cache shares the longest prefix with it (that much prefill is
// saved), the least recently used among equals. free must not be empty.
func PickSlot[S Cached](free []S, prompt []int) int {
	best, bestN := 0, -1
	for i, f := range free {
		n := CommonPrefix(f.CachedTokens(), prompt)
		if n > bestN || (n == bestN && f.LastUse() < free[best].LastUse()) {
			best, bestN = i, n
		}
	}
	return best
}
