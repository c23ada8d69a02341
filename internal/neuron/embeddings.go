package neuron

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"sync"

	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// maxEmbeddingInputs bounds one request's inputs, as OpenAI does.
const maxEmbeddingInputs = 2048

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req openai.EmbeddingRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
		writeError(w, err)
		return
	}
	inputs, _ := req.Inputs() // Validate checked them
	if len(inputs) > maxEmbeddingInputs {
		writeError(w, openai.InvalidRequest("input", openai.CodeInvalidValue, "Invalid 'input': at most %d inputs per request, got %d.", maxEmbeddingInputs, len(inputs)))
		return
	}
	l, err := s.reg.acquire(req.Model, true)
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	infoOf(r).model = l.m.name

	toks := make([][]int, len(inputs))
	total := 0
	for i, in := range inputs {
		param := "input"
		if len(inputs) > 1 {
			param = fmt.Sprintf("input[%d]", i)
		}
		t := in.Tokens
		if t == nil && in.Text == "" {
			writeError(w, openai.InvalidRequest(param, openai.CodeInvalidValue, "Invalid '%s': the input is empty.", param))
			return
		}
		if t == nil {
			if t, err = l.eng.Tokenize(in.Text, true, false); err != nil {
				writeError(w, inferenceError(l.m.name, err))
				return
			}
		} else {
			for _, id := range t {
				if id < 0 || (l.info.VocabSize > 0 && id >= l.info.VocabSize) {
					writeError(w, openai.InvalidRequest(param, openai.CodeInvalidValue, "Invalid '%s': token %d is outside the vocabulary of %d tokens.", param, id, l.info.VocabSize))
					return
				}
			}
		}
		if len(t) == 0 {
			writeError(w, openai.InvalidRequest(param, openai.CodeInvalidValue, "Invalid '%s': the input is empty.", param))
			return
		}
		if n := l.info.ContextLength; n > 0 && len(t) > n {
			writeError(w, errContextLength(n, len(t), "input"))
			return
		}
		toks[i] = t
		total += len(t)
	}

	// Inputs are embedded concurrently, as many at once as the model has
	// sequences; the engine queues the rest.
	vecs := make([][]float32, len(toks))
	errs := make([]error, len(toks))
	sem := make(chan struct{}, max(l.info.Parallel, 1))
	var wg sync.WaitGroup
	for i := range toks {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			vecs[i], errs[i] = l.eng.Embed(r.Context(), toks[i])
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			if e := inferenceError(l.m.name, err); e != nil {
				writeError(w, e)
			}
			return
		}
	}
	resp := openai.EmbeddingResponse{Object: "list", Model: req.Model, Data: make([]openai.Embedding, len(vecs)),
		Usage: openai.EmbeddingUsage{PromptTokens: total, TotalTokens: total}}
	for i, v := range vecs {
		if req.Dimensions != nil && *req.Dimensions != len(v) {
			writeError(w, openai.Unsupported("dimensions", "Invalid 'dimensions': this model's embeddings have %d dimensions and cannot be shortened to %d.", len(v), *req.Dimensions))
			return
		}
		var emb any = v
		if req.EncodingFormat == "base64" {
			buf := make([]byte, 4*len(v))
			for j, f := range v {
				binary.LittleEndian.PutUint32(buf[4*j:], math.Float32bits(f))
			}
			emb = base64.StdEncoding.EncodeToString(buf)
		}
		resp.Data[i] = openai.Embedding{Object: "embedding", Index: i, Embedding: emb}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (s *Server) handleTokenize(w http.ResponseWriter, r *http.Request) {
	var req neuronapi.TokenizeRequest
	if !s.decode(w, r, &req) {
		return
	}
	if req.Model == "" {
		writeError(w, openai.MissingParameter("model"))
		return
	}
	l, err := s.reg.acquire(req.Model, false)
	if err != nil {
		writeError(w, err)
		return
	}
	defer l.release()
	infoOf(r).model = l.m.name
	var tokens []int
	images := 0
	if req.Chat != nil {
		raw, err := json.Marshal(req.Chat)
		if err != nil {
			writeError(w, openai.InvalidRequest("chat", openai.CodeInvalidType, "Invalid 'chat': %s.", err.Error()))
			return
		}
		var cr openai.ChatRequest
		if err := openai.DecodeJSONBytes(raw, &cr); err != nil {
			oe := openai.AsError(err)
			e := *oe
			e.Param = "chat." + oe.Param
			writeError(w, &e)
			return
		}
		cr.Model = req.Model
		if err := cr.Validate(); err != nil {
			writeError(w, err)
			return
		}
		var placed []int
		if _, placed, err = s.renderChat(l, &cr); err != nil {
			writeError(w, err)
			return
		}
		// Image placeholders are left out of the tokens; each counts as
		// the positions the projector gives one image, when known.
		tokens = make([]int, 0, len(placed))
		for _, t := range placed {
			if t != engine.ImageToken {
				tokens = append(tokens, t)
			} else if l.m.est != nil {
				images += l.m.est.ImageTokens
			}
		}
	} else if tokens, err = l.eng.Tokenize(req.Text, true, true); err != nil {
		writeError(w, inferenceError(l.m.name, err))
		return
	}
	if tokens == nil {
		tokens = []int{}
	}
	writeJSON(w, http.StatusOK, neuronapi.TokenizeResponse{Tokens: tokens, Count: len(tokens) + images})
}
