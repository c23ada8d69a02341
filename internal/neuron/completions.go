package neuron

import (
	"net/http"
	"time"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// legacyLogprobs is the logprobs object of the completions API.
type legacyLogprobs struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float32            `json:"token_logprobs"`
	TopLogprobs   []map[string]float32 `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

func (lp *legacyLogprobs) add(offset int, in []engine.TokenLogprob, top int) int {
	for _, t := range in {
		lp.Tokens = append(lp.Tokens, t.Token)
		lp.TokenLogprobs = append(lp.TokenLogprobs, t.Logprob)
		alts := map[string]float32{}
		for i, a := range t.Top {
			if i >= top {
				break
			}
			alts[a.Token] = a.Logprob
		}
		lp.TopLogprobs = append(lp.TopLogprobs, alts)
		lp.TextOffset = append(lp.TextOffset, offset)
		offset += len(t.Token)
	}
	return offset
}

func newLegacyLogprobs() *legacyLogprobs {
	return &legacyLogprobs{Tokens: []string{}, TokenLogprobs: []float32{}, TopLogprobs: []map[string]float32{}, TextOffset: []int{}}
}

func (s *Server) handleCompletions(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req openai.CompletionRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		writeError(w, err)
		return
	}
	if len(req.Prompt) != 1 {
		writeError(w, openai.Unsupported("prompt", "Invalid 'prompt': send one prompt per request (got %d); batch by sending requests concurrently.", len(req.Prompt)))
		return
	}
	if req.Suffix != "" {
		writeError(w, openai.Unsupported("suffix", "Invalid 'suffix': insertion (fill-in-the-middle) is not supported."))
		return
	}
	gen, err := chat.CompletionGeneration(&req)
	if err != nil {
		writeError(w, err)
		return
	}
	l, err := s.reg.acquire(req.Model, true)
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	infoOf(r).model = l.m.name
	prompt := req.Prompt[0]
	tokens, err := l.eng.Tokenize(prompt, true, true)
	if err != nil {
		writeError(w, inferenceError(l.m.name, err))
		return
	}
	if n := l.info.ContextLength; n > 0 && len(tokens) >= n {
		writeError(w, errContextLength(n, len(tokens), "prompt"))
		return
	}
	gr := engine.GenerateRequest{Prompt: tokens, MaxTokens: gen.MaxTokens, Sampling: gen.Sampling, Stop: gen.Stop,
		Logprobs: gen.Logprobs, TopLogprobs: gen.TopLogprobs}
	l.setPrefillRate(w.Header())
	g := &generation{s: s, l: l, endpoint: neuronapi.PathCompletions, start: start}
	id, created := newID("cmpl-"), start.Unix()
	chunk := func(text string, finish *string, lp any) openai.CompletionResponse {
		return openai.CompletionResponse{ID: id, Object: "text_completion", Created: created, Model: req.Model,
			Choices: []openai.CompletionChoice{{Index: 0, Text: text, FinishReason: finish, Logprobs: lp}}}
	}
	echo := ""
	if req.Echo {
		echo = prompt
	}

	if req.Stream {
		st := newStreamer(w, s.cfg.KeepAliveInterval)
		defer st.close()
		offset := len(echo)
		if echo != "" {
			if st.send(chunk(echo, nil, nil)) != nil {
				return
			}
		}
		res, err := g.run(r, gr, func(c engine.Chunk) error {
			var lp any
			if gen.Logprobs {
				l := newLegacyLogprobs()
				offset = l.add(offset, c.Logprobs, gen.TopLogprobs)
				lp = l
			}
			return st.send(chunk(c.Text, nil, lp))
		})
		if err != nil {
			if e := inferenceError(l.m.name, err); e != nil {
				st.fail(e)
			}
			return
		}
		finish := string(res.FinishReason)
		if st.send(chunk("", &finish, nil)) != nil {
			return
		}
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			if st.send(openai.CompletionResponse{ID: id, Object: "text_completion", Created: created, Model: req.Model,
				Choices: []openai.CompletionChoice{}, Usage: usageOf(res)}) != nil {
				return
			}
		}
		st.done()
		return
	}

	text := []byte(echo)
	lp := newLegacyLogprobs()
	offset := len(echo)
	g.firstToken = firstTokenHint(w, r)
	res, err := g.run(r, gr, func(c engine.Chunk) error {
		text = append(text, c.Text...)
		if gen.Logprobs {
			offset = lp.add(offset, c.Logprobs, gen.TopLogprobs)
		}
		return nil
	})
	if err != nil {
		if e := inferenceError(l.m.name, err); e != nil {
			writeError(w, e)
		}
		return
	}
	finish := string(res.FinishReason)
	var lpv any
	if gen.Logprobs {
		lpv = lp
	}
	resp := chunk(string(text), &finish, lpv)
	resp.Usage = usageOf(res)
	writeJSON(w, http.StatusOK, resp)
}
