// A reference benchmark driver in C: the timing loops of llama.cpp's
// llama-bench (its "pp" and "tg" tests), extended to several sequences per
// batch as llama-batched-bench does. llama-bench's own source
// (tools/llama-bench) is not part of the pinned module, so this stands in
// for it: it runs in the same process, on the same compiled llama.cpp and
// ggml, and measures what llama.cpp alone can do with no Go in the loop.
#ifndef CORTEX_LLAMABENCH_H
#define CORTEX_LLAMABENCH_H

#include "pinned.h"

// cortex_bench_pp clears the context's memory, then decodes n_seq
// sequences of n_prompt random tokens (BOS first when the model adds one),
// in batches of at most n_batch tokens laid out by ascending sequence,
// asking for the logits of each sequence's last token only. *ns is the
// time from the first llama_decode to llama_synchronize after the last.
// It returns llama_decode's first non-zero code, or 0.
int cortex_bench_pp(struct llama_context *ctx, int n_prompt, int n_seq, int n_batch, uint32_t seed, int64_t *ns);

// cortex_bench_tg clears the memory, decodes an n_prompt-token prompt for
// each of n_seq sequences (not timed), then times n_gen steps that each
// decode one random token per sequence with its logits, synchronising
// after every step as llama-bench does.
int cortex_bench_tg(struct llama_context *ctx, int n_prompt, int n_gen, int n_seq, uint32_t seed, int64_t *ns);

#endif
