package neuron

import (
	"crypto/rand"
	"errors"
	"net/http"
	"time"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

const idAlphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// newID returns prefix and 24 random alphanumerics, as OpenAI's ids look.
func newID(prefix string) string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = idAlphabet[int(b[i])%len(idAlphabet)]
	}
	return prefix + string(b)
}

// generation runs one engine generation for a handler: it records metrics,
// reports a poisoned engine, and maps errors.
type generation struct {
	s        *Server
	l        *lease
	endpoint string
	start    time.Time
	first    time.Time
	// firstToken, when set, is called once at the first token
	// (firstTokenHint).
	firstToken func()
}

// firstTokenHint returns what tells a client that asked for it
// (neuronapi.HeaderFirstToken) that its plain answer's first token was
// generated: a 103 Early Hints response with that header, which Go's
// server sends at once; nil if the client did not ask. It runs on the
// handler's goroutine (the engine calls back on the one that waits).
func firstTokenHint(w http.ResponseWriter, r *http.Request) func() {
	if r.Header.Get(neuronapi.HeaderFirstToken) == "" {
		return nil
	}
	return func() { neuronapi.WriteFirstToken(w) }
}

func (g *generation) run(r *http.Request, req engine.GenerateRequest, onChunk func(engine.Chunk) error) (engine.Result, error) {
	res, err := g.l.eng.Generate(r.Context(), req, func(c engine.Chunk) error {
		if g.first.IsZero() {
			g.first = time.Now()
			g.s.met.ttft.WithLabelValues(g.l.m.name, g.endpoint).Observe(g.first.Sub(g.start).Seconds())
			if g.firstToken != nil {
				g.firstToken()
			}
		}
		return onChunk(c)
	})
	g.l.observePrefill(res.PromptTokens-res.CachedTokens, res.PromptTime)
	if res.PromptTokens > 0 || res.CompletionTokens > 0 {
		g.s.met.observeGeneration(g.l.m.name, res.PromptTokens, res.CachedTokens, res.CompletionTokens, res.QueueTime, res.PromptTime, res.GenerateTime)
	}
	if errors.Is(err, engine.ErrPoisoned) {
		g.s.reg.poisoned(g.l.m, g.l.eng)
	}
	return res, err
}

func usageOf(res engine.Result) *openai.Usage {
	return &openai.Usage{
		PromptTokens:        res.PromptTokens,
		CompletionTokens:    res.CompletionTokens,
		TotalTokens:         res.PromptTokens + res.CompletionTokens,
		PromptTokensDetails: &openai.PromptTokensDetails{CachedTokens: res.CachedTokens, ImageTokens: res.ImageTokens},
	}
}

func chatLogprobs(in []engine.TokenLogprob) []openai.TokenLogprob {
	out := make([]openai.TokenLogprob, 0, len(in))
	for _, t := range in {
		tl := openai.TokenLogprob{Token: t.Token, Logprob: t.Logprob, Bytes: byteInts(t.Bytes), TopLogprobs: []openai.TopLogprob{}}
		for _, a := range t.Top {
			tl.TopLogprobs = append(tl.TopLogprobs, openai.TopLogprob{Token: a.Token, Logprob: a.Logprob, Bytes: byteInts(a.Bytes)})
		}
		out = append(out, tl)
	}
	return out
}

func byteInts(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}

// prepareChat turns a chat request into the engine request: the template
// renders it, the prompt is tokenized and checked against the context.
func (s *Server) prepareChat(l *lease, req *openai.ChatRequest) (*chat.Prepared, []int, error) {
	p, tokens, err := s.renderChat(l, req)
	if err != nil {
		return nil, nil, err
	}
	// Images take more positions than their placeholders; the engine
	// checks the whole once it has them.
	if n := l.info.ContextLength; n > 0 && len(tokens) >= n {
		return nil, nil, errContextLength(n, len(tokens), "messages")
	}
	return p, tokens, nil
}

// renderChat renders and tokenizes a chat request; images (vision models)
// are engine.ImageToken placeholders.
func (s *Server) renderChat(l *lease, req *openai.ChatRequest) (*chat.Prepared, []int, error) {
	var opts chat.Options
	if l.info.Vision {
		opts.Images = &chat.ImageLimits{MaxBytes: s.cfg.MaxImageBytes, MaxPixels: s.cfg.MaxImagePixels}
	}
	p, err := l.tmpl.PrepareWith(req, l.eng, opts)
	if err != nil {
		return nil, nil, inferenceError(l.m.name, err)
	}
	var tokens []int
	if opts.Images != nil {
		tokens, err = chat.TokenizePrompt(p.Prompt, l.eng.Tokenize)
	} else {
		tokens, err = l.eng.Tokenize(p.Prompt, true, true)
	}
	if err != nil {
		return nil, nil, inferenceError(l.m.name, err)
	}
	return p, tokens, nil
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	var req openai.ChatRequest
	if !s.decode(w, r, &req) {
		return
	}
	if err := req.Validate(); err != nil {
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
	p, tokens, err := s.prepareChat(l, &req)
	if err != nil {
		writeError(w, err)
		return
	}
	l.setPrefillRate(w.Header())
	g := &generation{s: s, l: l, endpoint: neuronapi.PathChatCompletions, start: start}
	c := chatCall{id: newID("chatcmpl-"), created: start.Unix(), model: req.Model, logprobs: req.Logprobs}
	gr := p.GenerateRequest(tokens)
	parser := p.NewParser()
	if req.Stream {
		c.stream(s, w, r, g, gr, parser, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
		return
	}
	var lps []openai.TokenLogprob
	g.firstToken = firstTokenHint(w, r)
	res, err := g.run(r, gr, func(ch engine.Chunk) error {
		parser.Feed(ch.Text)
		if c.logprobs {
			lps = append(lps, chatLogprobs(ch.Logprobs)...)
		}
		return nil
	})
	if err != nil {
		if e := inferenceError(l.m.name, err); e != nil {
			writeError(w, e)
		}
		return
	}
	parser.Finish()
	out := parser.Result()
	choice := openai.ChatChoice{Index: 0, Message: out.Message(), FinishReason: out.FinishReason(res.FinishReason),
		StopSequence: stopSequence(res)}
	if c.logprobs {
		choice.Logprobs = &openai.Logprobs{Content: lps}
	}
	writeJSON(w, http.StatusOK, openai.ChatResponse{
		ID: c.id, Object: "chat.completion", Created: c.created, Model: c.model,
		Choices: []openai.ChatChoice{choice}, Usage: usageOf(res),
	})
}

// stopSequence reports the stop string that ended a generation, for the
// stop_sequence extension Anthropic clients read (stop_reason
// "stop_sequence"); nil when the model ended on its own.
func stopSequence(res engine.Result) *string {
	if res.StopSequence == "" {
		return nil
	}
	s := res.StopSequence
	return &s
}

type chatCall struct {
	id       string
	created  int64
	model    string
	logprobs bool
	roleSent bool
}

func (c *chatCall) chunk(delta openai.Delta, finish *string) openai.ChatChunk {
	if !c.roleSent {
		delta.Role = "assistant"
		c.roleSent = true
	}
	return openai.ChatChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
		Choices: []openai.ChunkChoice{{Index: 0, Delta: delta, FinishReason: finish}}}
}

// deltas groups parser events into deltas: runs of content (or reasoning)
// merge, and each tool call's first fragment carries its id, type and name.
func deltas(events []chat.Event) []openai.Delta {
	var out []openai.Delta
	var cur *openai.Delta
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	for _, ev := range events {
		switch ev.Kind {
		case chat.EventContent:
			if cur == nil || cur.Content == nil || cur.ToolCalls != nil || cur.ReasoningContent != nil {
				flush()
				cur = &openai.Delta{Content: new(string)}
			}
			*cur.Content += ev.Text
		case chat.EventReasoning:
			if cur == nil || cur.ReasoningContent == nil || cur.ToolCalls != nil || cur.Content != nil {
				flush()
				cur = &openai.Delta{ReasoningContent: new(string)}
			}
			*cur.ReasoningContent += ev.Text
		case chat.EventToolCallStart:
			flush()
			idx := ev.Index
			cur = &openai.Delta{ToolCalls: []openai.ToolCall{{Index: &idx, ID: ev.ID, Type: "function",
				Function: openai.FunctionCall{Name: ev.Name}}}}
		case chat.EventToolCallArgs:
			if cur == nil || len(cur.ToolCalls) != 1 || *cur.ToolCalls[0].Index != ev.Index {
				flush()
				idx := ev.Index
				cur = &openai.Delta{ToolCalls: []openai.ToolCall{{Index: &idx}}}
			}
			cur.ToolCalls[0].Function.Arguments += ev.Text
		}
	}
	flush()
	return out
}

func (c *chatCall) stream(s *Server, w http.ResponseWriter, r *http.Request, g *generation, gr engine.GenerateRequest, parser *chat.Parser, includeUsage bool) {
	st := newStreamer(w, s.cfg.KeepAliveInterval)
	defer st.close()
	var pending []openai.TokenLogprob
	emit := func(events []chat.Event) error {
		for _, d := range deltas(events) {
			ch := c.chunk(d, nil)
			if c.logprobs && d.Content != nil && len(pending) > 0 {
				ch.Choices[0].Logprobs = &openai.Logprobs{Content: pending}
				pending = nil
			}
			if err := st.send(ch); err != nil {
				return err
			}
		}
		return nil
	}
	res, err := g.run(r, gr, func(ch engine.Chunk) error {
		if c.logprobs {
			pending = append(pending, chatLogprobs(ch.Logprobs)...)
		}
		return emit(parser.Feed(ch.Text))
	})
	if err != nil {
		if e := inferenceError(g.l.m.name, err); e != nil {
			st.fail(e)
		}
		return
	}
	if err := emit(parser.Finish()); err != nil {
		return
	}
	finish := parser.Result().FinishReason(res.FinishReason)
	last := c.chunk(openai.Delta{}, &finish)
	last.Choices[0].StopSequence = stopSequence(res)
	if c.logprobs && len(pending) > 0 {
		last.Choices[0].Logprobs = &openai.Logprobs{Content: pending}
	}
	if st.send(last) != nil {
		return
	}
	if includeUsage {
		if st.send(openai.ChatChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
			Choices: []openai.ChunkChoice{}, Usage: usageOf(res)}) != nil {
			return
		}
	}
	st.done()
}
