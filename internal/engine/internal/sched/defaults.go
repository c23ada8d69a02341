package sched

import (
	"fmt"

	"github.com/helexa-ai/cortex/internal/engine"
)

// Defaults both engines apply to LoadParams.
const (
	// DefaultParallel is the number of sequences when Parallel is 0.
	DefaultParallel = 4
	// MaxParallel is llama.cpp's limit on sequences per context.
	MaxParallel = 256
	// DefaultMaxContext caps the default context length.
	DefaultMaxContext = 8192
)

// Slots resolves LoadParams.Parallel and QueueSize.
func Slots(p engine.LoadParams) (parallel, queue int, err error) {
	parallel, queue = p.Parallel, p.QueueSize
	switch {
	case parallel == 0:
		parallel = DefaultParallel
	case parallel < 0 || parallel > MaxParallel:
		return 0, 0, fmt.Errorf("parallel %d is outside [1,%d]", parallel, MaxParallel)
	}
	switch {
	case queue == 0:
		queue = 4 * parallel
	case queue < 0:
		return 0, 0, fmt.Errorf("queue size %d is negative", queue)
	}
	return parallel, queue, nil
}

// ContextLength resolves LoadParams.ContextLength against the model's
// trained context (0 when unknown).
func ContextLength(requested, trained int) int {
	if requested > 0 {
		return requested
	}
	if trained > 0 {
		return min(trained, DefaultMaxContext)
	}
	return DefaultMaxContext
}
