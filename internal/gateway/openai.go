package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// affinityPrefix is how many bytes of a conversation's start pick its
// replica: as many as PrefixKeys hashes (128 KiB, some 30 µs of hashing).
const affinityPrefix = MaxPrefixKeys * PrefixChunk

// readBody reads the request body under the size limit.
func (g *Gateway) readBody(c echo.Context) ([]byte, error) {
	if err := openai.CheckContentType(c.Request().Header.Get("Content-Type")); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, openai.RequestTooLarge(g.cfg.MaxBodyBytes)
		}
		return nil, openai.InvalidRequest("", openai.CodeInvalidJSON, "could not read the request body: %v", err)
	}
	info(c).bodyBytes = len(data)
	return data, nil
}

// decode reads the request body and decodes it as T: wrong-typed fields
// are 400s naming their path, an oversized body a 413.
func decode[T any](g *Gateway, c echo.Context) (*T, error) {
	data, err := g.readBody(c)
	if err != nil {
		return nil, err
	}
	var v T
	if err := openai.DecodeJSONBytes(data, &v); err != nil {
		return nil, err
	}
	return &v, nil
}

// relay answers a call the neuron's answer passes through unchanged.
func (g *Gateway) relay(c echo.Context, uc *upstreamCall, includeUsage bool) error {
	info(c).stream = uc.stream
	if !uc.stream {
		return g.relayJSON(c, uc)
	}
	return g.relayChatStream(c, uc, includeUsage)
}

// resolve maps the client's model name to a Model key.
func (g *Gateway) resolve(c echo.Context, name string) (string, error) {
	ri := info(c)
	ri.client = name
	if name == "" {
		return "", openai.MissingParameter("model")
	}
	key, err := g.lookupFor(c, name) // only the Models the API key may use
	if err != nil {
		if errors.Is(err, errUnknownModel) {
			return "", openai.ModelNotFound(name)
		}
		return "", err
	}
	ri.model = key
	return key, g.admitKey(c) // the key's rate and concurrency limits
}

// prepareChat validates an OpenAI chat request and turns it into the call
// a neuron serves. The upstream always streams usage, so metrics see token
// counts even when the client did not ask for them.
func (g *Gateway) prepareChat(c echo.Context, req *openai.ChatRequest) (*upstreamCall, error) {
	if err := req.Validate(); err != nil {
		return nil, err
	}
	key, err := g.resolve(c, req.Model)
	if err != nil {
		return nil, err
	}
	up := *req
	up.Model = key
	if up.Stream {
		opts := openai.StreamOptions{IncludeUsage: true}
		up.StreamOptions = &opts
	}
	body, err := json.Marshal(&up)
	if err != nil {
		return nil, err
	}
	uc := &upstreamCall{key: key, path: neuronapi.PathChatCompletions, body: body, stream: up.Stream}
	prefix, size := conversationPrefix(req.Messages)
	uc.prefix, uc.promptBytes = PrefixKeys(key, prefix), size
	info(c).stream = up.Stream
	return uc, nil
}

// conversationPrefix is the start of a conversation as bytes, for
// affinity: each message's role and content in order, so a conversation
// that grows keeps the keys of what it was; and size, the bytes the whole
// conversation would give, the prompt's size for the balancer.
func conversationPrefix(msgs []openai.Message) (prefix []byte, size int) {
	for _, m := range msgs {
		content := m.Content.String()
		size += len(m.Role) + len(content) + 2
		if len(prefix) < affinityPrefix {
			prefix = append(prefix, m.Role...)
			prefix = append(prefix, 0)
			prefix = append(prefix, content...)
			prefix = append(prefix, 0)
		}
	}
	return prefix[:min(len(prefix), affinityPrefix)], size
}

func (g *Gateway) chatCompletions(c echo.Context) error {
	req, err := decode[openai.ChatRequest](g, c)
	if err != nil {
		return err
	}
	uc, err := g.prepareChat(c, req)
	if err != nil {
		return err
	}
	return g.relay(c, uc, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

func (g *Gateway) completions(c echo.Context) error {
	req, err := decode[openai.CompletionRequest](g, c)
	if err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	key, err := g.resolve(c, req.Model)
	if err != nil {
		return err
	}
	up := *req
	up.Model = key
	if up.Stream {
		up.StreamOptions = &openai.StreamOptions{IncludeUsage: true}
	}
	body, err := json.Marshal(&up)
	if err != nil {
		return err
	}
	uc := &upstreamCall{key: key, path: neuronapi.PathCompletions, body: body, stream: up.Stream}
	if len(req.Prompt) > 0 {
		p := req.Prompt[0]
		uc.prefix = PrefixKeys(key, []byte(p[:min(len(p), affinityPrefix)]))
	}
	for _, p := range req.Prompt {
		uc.promptBytes += len(p)
	}
	return g.relay(c, uc, req.StreamOptions != nil && req.StreamOptions.IncludeUsage)
}

func (g *Gateway) embeddings(c echo.Context) error {
	req, err := decode[openai.EmbeddingRequest](g, c)
	if err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return err
	}
	key, err := g.resolve(c, req.Model)
	if err != nil {
		return err
	}
	up := *req
	up.Model = key
	body, err := json.Marshal(&up)
	if err != nil {
		return err
	}
	return g.relayJSON(c, &upstreamCall{key: key, path: neuronapi.PathEmbeddings, body: body})
}

// usageOf reads token counts from an OpenAI answer (chat, completion or
// embeddings).
type usageOf struct {
	Usage *struct {
		PromptTokens        int `json:"prompt_tokens"`
		CompletionTokens    int `json:"completion_tokens"`
		PromptTokensDetails *struct {
			CachedTokens int `json:"cached_tokens"`
		} `json:"prompt_tokens_details"`
	} `json:"usage"`
}

func (u *usageOf) record(ri *reqInfo) {
	if u.Usage == nil {
		return
	}
	ri.prompt, ri.output = u.Usage.PromptTokens, u.Usage.CompletionTokens
	if d := u.Usage.PromptTokensDetails; d != nil {
		ri.cached = d.CachedTokens
	}
}

// fetchJSON dispatches a non-streaming call and returns the answer's body.
func (g *Gateway) fetchJSON(c echo.Context, uc *upstreamCall) ([]byte, error) {
	up, err := g.dispatch(c, uc)
	if err != nil {
		return nil, err
	}
	defer up.close()
	data, err := io.ReadAll(io.LimitReader(up.body, 256<<20))
	if err != nil {
		g.metrics.upstreamErrors.WithLabelValues(uc.key, up.replica.Node, "stream").Inc()
		return nil, newAPIError(openai.NewError(http.StatusBadGateway, openai.TypeServer, openai.CodeServerError, "",
			"the replica on %s failed while answering: %v", up.replica.Node, err), 0)
	}
	ri := info(c)
	var u usageOf
	if json.Unmarshal(data, &u) == nil {
		u.record(ri)
	}
	// A plain answer arrives whole: its generation took the request's
	// time less any cold-start wait.
	ri.genTime = g.clock.Since(ri.start) - ri.coldWait
	return data, nil
}

// relayJSON relays a non-streaming OpenAI answer as it came.
func (g *Gateway) relayJSON(c echo.Context, uc *upstreamCall) error {
	data, err := g.fetchJSON(c, uc)
	if err != nil {
		return err
	}
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, data)
}

// streamOut is the client side of an event stream: it commits the 200 and
// the SSE headers on first use, so errors before that are plain JSON
// answers and errors after it are events.
type streamOut struct {
	c         echo.Context
	w         *sse.Writer
	committed bool
}

func newStreamOut(c echo.Context) *streamOut { return &streamOut{c: c} }

func (s *streamOut) begin() *sse.Writer {
	if !s.committed {
		h := s.c.Response().Header()
		h.Set(echo.HeaderContentType, sse.ContentType)
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Accel-Buffering", "no")
		s.c.Response().WriteHeader(http.StatusOK)
		s.w = sse.NewWriter(s.c.Response())
		s.committed = true
	}
	return s.w
}

// keepAlive writes a comment, committing the stream.
func (s *streamOut) keepAlive() { _ = s.begin().KeepAlive() }

// chunkPeek is what the gateway reads from every upstream chunk: whether
// it carries a choice (the first one times the first token), its usage,
// and an in-stream error.
type chunkPeek struct {
	Choices []json.RawMessage `json:"choices"`
	usageOf
	Error json.RawMessage `json:"error"`
}

var (
	usageKey = []byte(`"usage"`)
	errorKey = []byte(`"error"`)
	// notEmpty marks a chunk known to carry a choice without parsing it.
	notEmpty = []json.RawMessage{nil}
)

// pumpHooks render an upstream chat stream in the client's dialect.
type pumpHooks struct {
	// chunk writes what the client sees for one upstream chunk; an error
	// means the stream must end (the client left, or the chunk could not be
	// rendered and fail was called).
	chunk func(w *sse.Writer, data []byte, peek *chunkPeek) error
	// done ends a stream the upstream finished.
	done func(w *sse.Writer)
	// fail ends a stream with an error event.
	fail func(w *sse.Writer, err error)
}

// pump dispatches a streaming call and relays its events through hooks,
// timing the first token and reading usage on the way. Errors before the
// stream is committed are returned (a plain error answer); after, they end
// the stream through hooks.fail.
func (g *Gateway) pump(c echo.Context, out *streamOut, uc *upstreamCall, h pumpHooks) error {
	g.streams.Add(1)
	defer g.streams.Done()
	up, err := g.dispatch(c, uc)
	if err != nil {
		if out.committed {
			h.fail(out.begin(), toAPIError(err))
			return nil
		}
		return err
	}
	defer up.close()
	ri := info(c)
	w := out.begin()
	// Events that arrive together leave together: flush only when the
	// upstream has nothing more buffered, so a fast stream costs one write
	// per batch instead of one per token, and a slow one is not delayed.
	w.SetManualFlush(true)
	// The client hears from the gateway at least every KeepAliveInterval,
	// even while the neuron is silent (queued, or a long prefill whose own
	// keep-alive comments the reader consumes): writes go through mu.
	var mu sync.Mutex
	lastWrite := g.clock.Now()
	// The pinger is waited for before the handler returns: a ping that
	// raced the end of the stream would write to a finished response,
	// which crashes the process.
	stopPing, pingDone := make(chan struct{}), make(chan struct{})
	defer func() {
		close(stopPing)
		<-pingDone
	}()
	go func() {
		defer close(pingDone)
		t := time.NewTicker(g.cfg.KeepAliveInterval)
		defer t.Stop()
		for {
			select {
			case <-stopPing:
				return
			case <-t.C:
				mu.Lock()
				select {
				case <-stopPing:
					mu.Unlock()
					return
				default:
				}
				if g.clock.Since(lastWrite) >= g.cfg.KeepAliveInterval {
					_ = w.KeepAlive()
					_ = w.Flush()
					lastWrite = g.clock.Now()
				}
				mu.Unlock()
			}
		}
	}()
	defer func() {
		mu.Lock()
		_ = w.Flush()
		mu.Unlock()
	}()
	rd := sse.NewReader(up.body)
	var first time.Time
	for {
		if rd.Buffered() == 0 {
			mu.Lock()
			err := w.Flush()
			mu.Unlock()
			if err != nil {
				ri.streamErr = "client disconnected"
				return nil
			}
		}
		ev, err := rd.Next()
		mu.Lock()
		lastWrite = g.clock.Now()
		mu.Unlock()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			g.metrics.upstreamErrors.WithLabelValues(uc.key, up.replica.Node, "stream").Inc()
			ri.streamErr = err.Error()
			mu.Lock()
			h.fail(w, newAPIError(openai.NewError(http.StatusBadGateway, openai.TypeServer, openai.CodeServerError, "",
				"the replica on %s stopped mid-stream", up.replica.Node), 0))
			mu.Unlock()
			return nil
		}
		if ev.IsDone() {
			// Read to the end so the connection goes back to the pool.
			_, _ = io.Copy(io.Discard, io.LimitReader(up.body, 64<<10))
			mu.Lock()
			h.done(w)
			mu.Unlock()
			if !first.IsZero() {
				ri.genTime = g.clock.Since(first)
			}
			return nil
		}
		data := []byte(ev.Data)
		var peek chunkPeek
		// Parse only the chunks that matter here (the first one, usage,
		// errors): most chunks are a token each and go out untouched.
		if first.IsZero() || bytes.Contains(data, usageKey) || bytes.Contains(data, errorKey) {
			_ = json.Unmarshal(data, &peek)
		} else {
			peek.Choices = notEmpty
		}
		if len(peek.Choices) > 0 && first.IsZero() {
			up.started()
			first = ri.start.Add(ri.ttft)
		}
		peek.record(ri)
		if len(peek.Error) > 0 {
			ri.streamErr = string(peek.Error)
			mu.Lock()
			h.fail(w, upstreamStreamError(peek.Error))
			mu.Unlock()
			return nil
		}
		mu.Lock()
		err = h.chunk(w, data, &peek)
		mu.Unlock()
		if err != nil {
			if ri.streamErr == "" {
				ri.streamErr = err.Error()
			}
			return nil
		}
	}
}

// upstreamStreamError reads an error event a neuron sent mid-stream.
func upstreamStreamError(raw json.RawMessage) error {
	var d struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Code    *string `json:"code"`
	}
	oe := openai.ServerError("the model server failed mid-stream")
	if json.Unmarshal(raw, &d) == nil && d.Message != "" {
		oe.Message = d.Message
		if d.Type != "" {
			oe.Type = d.Type
		}
		if d.Code != nil {
			oe.Code = *d.Code
		}
	}
	return oe
}

// relayChatStream relays an OpenAI chat or completion stream as it comes.
// If the client did not ask for usage, the usage-only chunk is dropped.
func (g *Gateway) relayChatStream(c echo.Context, uc *upstreamCall, includeUsage bool) error {
	out := newStreamOut(c)
	uc.waiting = out.keepAlive
	return g.pump(c, out, uc, pumpHooks{
		chunk: func(w *sse.Writer, data []byte, peek *chunkPeek) error {
			if peek.Usage != nil && len(peek.Choices) == 0 && !includeUsage {
				return nil
			}
			return w.WriteEvent("", data)
		},
		done: func(w *sse.Writer) { _ = w.WriteDone() },
		fail: func(w *sse.Writer, err error) { _ = w.WriteJSON("", toAPIError(err).err.Body()) },
	})
}

func (g *Gateway) listModels(c echo.Context) error {
	views := g.visibleModels(c)
	if c.Request().Header.Get("anthropic-version") != "" {
		return c.JSON(http.StatusOK, anthropicModelList(views))
	}
	locs := locationsByKey(g.catalog.FleetReport())
	list := modelList{Object: "list", Data: []modelEntry{}}
	for _, v := range views {
		list.Data = append(list.Data, withLocations(modelObjects(v), locs[v.Key])...)
	}
	return c.JSON(http.StatusOK, list)
}

func (g *Gateway) getModel(c echo.Context) error {
	id := strings.TrimPrefix(c.Request().URL.Path, "/v1/models/")
	key, err := g.resolve(c, id)
	if err != nil {
		return err
	}
	for _, v := range g.catalog.Models() {
		if v.Key != key {
			continue
		}
		for _, o := range withLocations(modelObjects(v), locationsByKey(g.catalog.FleetReport())[key]) {
			if o.ID == id || (id == key && o.Cortex.Canonical == o.ID) {
				return c.JSON(http.StatusOK, o)
			}
		}
	}
	return openai.ModelNotFound(id)
}

// modelObjects lists a Model once per served name, so a client can pick any
// of them; the cortex extension says which are aliases of which.
func modelObjects(v ModelView) []openai.ModelObject {
	created := v.Model.CreationTimestamp.Unix()
	place := &openai.ModelPlacement{
		Model:     v.Key,
		Canonical: v.Names[0],
		Aliases:   v.Names[1:],
		Loaded:    len(v.ReadyNodes) > 0,
		Phase:     string(v.Model.Status.Phase),
		Nodes:     v.ReadyNodes,
		Placeable: v.SchedulableNodes,
	}
	if cl := v.Model.Spec.Engine.ContextLength; cl != nil {
		place.ContextLength = int(*cl)
	}
	place.Vision = v.Model.Spec.Source.Projector != nil
	out := make([]openai.ModelObject, 0, len(v.Names))
	for _, name := range v.Names {
		out = append(out, openai.ModelObject{ID: name, Object: "model", Created: created, OwnedBy: v.Model.Namespace, Cortex: place})
	}
	return out
}
