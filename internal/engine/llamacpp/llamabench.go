package llamacpp

/*
#include "llamabench.h"
*/
import "C"

import (
	"fmt"
	"time"
)

// refBench runs the reference driver (llamabench.c) on a context of its
// own, created with the same parameters as a model's engine context, so
// that benchmarks can set the engine against llama.cpp alone on the same
// weights in the same process.
type refBench struct {
	c *cContext
}

func newRefBench(m *cModel, p contextParams) (*refBench, error) {
	c, err := newCContext(m, p)
	if err != nil {
		return nil, err
	}
	return &refBench{c: c}, nil
}

// prompt times n sequences of length-token prompts (llama-bench's pp).
func (r *refBench) prompt(length, n int, seed uint32) (time.Duration, error) {
	var ns C.int64_t
	if rc := C.cortex_bench_pp(r.c.c, C.int(length), C.int(n), C.int(r.c.nBatch()), C.uint32_t(seed), &ns); rc != 0 {
		return 0, fmt.Errorf("llama_decode failed with code %d", int(rc))
	}
	return time.Duration(ns), nil
}

// generate times steps decodes of one token for each of n sequences after
// a prompt of promptLen tokens (llama-bench's tg).
func (r *refBench) generate(promptLen, steps, n int, seed uint32) (time.Duration, error) {
	var ns C.int64_t
	if rc := C.cortex_bench_tg(r.c.c, C.int(promptLen), C.int(steps), C.int(n), C.uint32_t(seed), &ns); rc != 0 {
		return 0, fmt.Errorf("llama_decode failed with code %d", int(rc))
	}
	return time.Duration(ns), nil
}

func (r *refBench) free() { r.c.free() }
