package chat

import (
	"fmt"
	"math"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Defaults for omitted sampling fields: llama.cpp server's (see the
// package doc for why not OpenAI's).
const (
	DefaultTemperature = 0.8
	DefaultTopP        = 0.95
	DefaultTopK        = 40
	DefaultMinP        = 0.05
)

// samplingFields are the sampling fields chat and completions share.
type samplingFields struct {
	temperature, topP, minP     *float32
	topK                        *int
	seed                        *int64
	presence, frequency, repeat *float32
	stop                        []string
}

func chatGeneration(req *openai.ChatRequest) (Generation, error) {
	g, err := mapSampling(samplingFields{
		temperature: req.Temperature, topP: req.TopP, minP: req.MinP, topK: req.TopK, seed: req.Seed,
		presence: req.PresencePenalty, frequency: req.FrequencyPenalty, repeat: req.RepeatPenalty, stop: req.Stop,
	})
	if err != nil {
		return Generation{}, err
	}
	// max_completion_tokens replaced max_tokens in OpenAI's API; when a
	// client sends both, the newer one is what it means.
	switch {
	case req.MaxCompletionTokens != nil:
		if *req.MaxCompletionTokens < 1 {
			return Generation{}, openai.InvalidRequest("max_completion_tokens", openai.CodeInvalidValue, "Invalid 'max_completion_tokens': must be at least 1, got %d.", *req.MaxCompletionTokens)
		}
		g.MaxTokens = *req.MaxCompletionTokens
	case req.MaxTokens != nil:
		if *req.MaxTokens < 1 {
			return Generation{}, openai.InvalidRequest("max_tokens", openai.CodeInvalidValue, "Invalid 'max_tokens': must be at least 1, got %d.", *req.MaxTokens)
		}
		g.MaxTokens = *req.MaxTokens
	}
	g.Logprobs = req.Logprobs
	if req.TopLogprobs != nil {
		n := *req.TopLogprobs
		if n < 0 || n > openai.MaxTopLogprobs {
			return Generation{}, openai.InvalidRequest("top_logprobs", openai.CodeInvalidValue, "Invalid 'top_logprobs': must be between 0 and %d, got %d.", openai.MaxTopLogprobs, n)
		}
		if n > 0 && !req.Logprobs {
			return Generation{}, openai.InvalidRequest("top_logprobs", openai.CodeInvalidValue, "Invalid 'top_logprobs': requires 'logprobs' to be true.")
		}
		g.TopLogprobs = n
	}
	return g, nil
}

func completionGeneration(req *openai.CompletionRequest) (Generation, error) {
	g, err := mapSampling(samplingFields{
		temperature: req.Temperature, topP: req.TopP, minP: req.MinP, topK: req.TopK, seed: req.Seed,
		presence: req.PresencePenalty, frequency: req.FrequencyPenalty, repeat: req.RepeatPenalty, stop: req.Stop,
	})
	if err != nil {
		return Generation{}, err
	}
	if req.MaxTokens != nil {
		if *req.MaxTokens < 1 {
			return Generation{}, openai.InvalidRequest("max_tokens", openai.CodeInvalidValue, "Invalid 'max_tokens': must be at least 1, got %d.", *req.MaxTokens)
		}
		g.MaxTokens = *req.MaxTokens
	}
	if req.Logprobs != nil {
		// The legacy API's logprobs is the number of alternatives (0..5);
		// 0 still returns the chosen tokens' log-probabilities.
		if n := *req.Logprobs; n < 0 || n > 5 {
			return Generation{}, openai.InvalidRequest("logprobs", openai.CodeInvalidValue, "Invalid 'logprobs': must be between 0 and 5, got %d.", n)
		}
		g.Logprobs, g.TopLogprobs = true, *req.Logprobs
	}
	return g, nil
}

func mapSampling(f samplingFields) (Generation, error) {
	s := engine.Sampling{
		Temperature:   DefaultTemperature,
		TopP:          DefaultTopP,
		TopK:          DefaultTopK,
		MinP:          DefaultMinP,
		RepeatPenalty: 1,
	}
	check := func(name string, v *float32, lo, hi float32, dst *float32) error {
		if v == nil {
			return nil
		}
		x := *v
		if math.IsNaN(float64(x)) || x < lo || x > hi {
			return openai.InvalidRequest(name, openai.CodeInvalidValue, "Invalid '%s': must be between %g and %g, got %g.", name, lo, hi, x)
		}
		*dst = x
		return nil
	}
	for _, c := range []struct {
		name   string
		v      *float32
		lo, hi float32
		dst    *float32
	}{
		{"temperature", f.temperature, 0, 2, &s.Temperature},
		{"top_p", f.topP, 0, 1, &s.TopP},
		{"min_p", f.minP, 0, 1, &s.MinP},
		{"presence_penalty", f.presence, -2, 2, &s.PresencePenalty},
		{"frequency_penalty", f.frequency, -2, 2, &s.FrequencyPenalty},
		{"repeat_penalty", f.repeat, 0, 10, &s.RepeatPenalty},
	} {
		if err := check(c.name, c.v, c.lo, c.hi, c.dst); err != nil {
			return Generation{}, err
		}
	}
	if f.topP != nil && *f.topP == 0 {
		// Nucleus sampling over probability mass 0 keeps only the most
		// likely token; the engine reads top_p 0 as "off", so say greedy.
		s.Temperature = 0
	}
	if f.topK != nil {
		if *f.topK < 0 {
			return Generation{}, openai.InvalidRequest("top_k", openai.CodeInvalidValue, "Invalid 'top_k': must be 0 or greater, got %d.", *f.topK)
		}
		s.TopK = *f.topK
	}
	if f.seed != nil && *f.seed != -1 {
		// OpenAI seeds are 64-bit, llama.cpp's 32-bit; fold the halves so
		// seeds that differ only in the high bits still differ. -1 is
		// llama.cpp's "random".
		v := uint64(*f.seed)
		seed := uint32(v) ^ uint32(v>>32)
		s.Seed = &seed
	}
	if len(f.stop) > openai.MaxStopSequences {
		return Generation{}, openai.InvalidRequest("stop", openai.CodeInvalidValue, "Invalid 'stop': at most %d sequences are supported, got %d.", openai.MaxStopSequences, len(f.stop))
	}
	stop := make([]string, 0, len(f.stop))
	for i, st := range f.stop {
		if st == "" {
			return Generation{}, openai.InvalidRequest(fmt.Sprintf("stop[%d]", i), openai.CodeInvalidValue, "Invalid 'stop[%d]': stop sequences must not be empty.", i)
		}
		stop = append(stop, st)
	}
	return Generation{Sampling: s, Stop: stop}, nil
}
