// See llamabench.h.
#include <time.h>

#include "llamabench.h"

static int64_t now_ns(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// xorshift32: any token will do, as for llama-bench's std::rand.
static llama_token random_token(uint32_t *state, int32_t n_vocab) {
	uint32_t x = *state;
	x ^= x << 13;
	x ^= x >> 17;
	x ^= x << 5;
	*state = x;
	return (llama_token)(x % (uint32_t)n_vocab);
}

static void batch_put(struct llama_batch *b, llama_token t, llama_pos pos, llama_seq_id seq, bool logits) {
	int i = b->n_tokens++;
	b->token[i] = t;
	b->pos[i] = pos;
	b->n_seq_id[i] = 1;
	b->seq_id[i][0] = seq;
	b->logits[i] = logits;
}

// prompts decodes the prompts of cortex_bench_pp.
static int prompts(struct llama_context *ctx, struct llama_batch *b, int n_prompt, int n_seq, int n_batch, uint32_t *rng) {
	const struct llama_vocab *vocab = llama_model_get_vocab(llama_get_model(ctx));
	const int32_t n_vocab = llama_vocab_n_tokens(vocab);
	const bool add_bos = llama_vocab_get_add_bos(vocab);
	int seq = 0, pos = 0;
	while (seq < n_seq) {
		b->n_tokens = 0;
		while (b->n_tokens < n_batch && seq < n_seq) {
			llama_token t = pos == 0 && add_bos ? llama_vocab_bos(vocab) : random_token(rng, n_vocab);
			batch_put(b, t, pos, seq, pos == n_prompt - 1);
			if (++pos == n_prompt) {
				pos = 0;
				seq++;
			}
		}
		int rc = llama_decode(ctx, *b);
		if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

int cortex_bench_pp(struct llama_context *ctx, int n_prompt, int n_seq, int n_batch, uint32_t seed, int64_t *ns) {
	uint32_t rng = seed ? seed : 1;
	llama_memory_clear(llama_get_memory(ctx), false);
	struct llama_batch b = llama_batch_init(n_batch, 0, 1);
	int64_t t0 = now_ns();
	int rc = prompts(ctx, &b, n_prompt, n_seq, n_batch, &rng);
	llama_synchronize(ctx);
	*ns = now_ns() - t0;
	llama_batch_free(b);
	return rc;
}

int cortex_bench_tg(struct llama_context *ctx, int n_prompt, int n_gen, int n_seq, uint32_t seed, int64_t *ns) {
	uint32_t rng = seed ? seed : 1;
	const int32_t n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
	const int n_batch = n_prompt * n_seq > n_seq ? n_prompt * n_seq : n_seq;
	llama_memory_clear(llama_get_memory(ctx), false);
	struct llama_batch b = llama_batch_init(n_batch, 0, 1);
	*ns = 0;
	int rc = prompts(ctx, &b, n_prompt, n_seq, n_batch, &rng);
	llama_synchronize(ctx);
	int64_t t0 = now_ns();
	for (int g = 0; g < n_gen && rc == 0; g++) {
		b.n_tokens = 0;
		for (int s = 0; s < n_seq; s++) {
			batch_put(&b, random_token(&rng, n_vocab), n_prompt + g, s, true);
		}
		rc = llama_decode(ctx, b);
		llama_synchronize(ctx);
	}
	*ns = now_ns() - t0;
	llama_batch_free(b);
	return rc;
}
