package gateway

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire"
	"github.com/helexa-ai/cortex/internal/wire/anthropic"
	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// anthropicError is the Anthropic status and envelope of an error (529
// overloaded_error for servers at capacity).
func anthropicError(e *openai.Error, requestID string) (int, anthropic.ErrorResponse) {
	status, env := anthropic.FromError(e)
	env.RequestID = requestID
	return status, env
}

func (g *Gateway) logWarnings(c echo.Context, warnings []wire.Warning) {
	if len(warnings) == 0 {
		return
	}
	logger := loggerOf(c)
	for _, w := range warnings {
		logger.Info("Request feature dropped", "id", info(c).id, "param", w.Param, "warning", w.Message)
	}
}

// decodeAnthropic reads a Messages (or count_tokens) request and its
// headers.
func (g *Gateway) decodeAnthropic(c echo.Context) (*anthropic.MessagesRequest, error) {
	hdr := anthropic.ParseHeaders(c.Request().Header)
	if !hdr.KnownVersion {
		loggerOf(c).V(1).Info("Unknown anthropic-version; serving it as the latest", "version", hdr.Version)
	}
	return decode[anthropic.MessagesRequest](g, c)
}

func (g *Gateway) messages(c echo.Context) error {
	req, err := g.decodeAnthropic(c)
	if err != nil {
		return err
	}
	return serveTranslated(g, c, dialect[anthropic.StreamEvent]{
		toChat: func() (*openai.ChatRequest, []wire.Warning, error) { return anthropic.ToOpenAIChat(req) },
		answer: func(resp *openai.ChatResponse) any { return anthropic.FromOpenAIChat(resp, req.Model) },
		stream: func() translator[anthropic.StreamEvent] {
			return anthropic.NewStreamTranslator(req.Model, anthropic.MessageID(""), 0)
		},
		write: anthropic.WriteEvents,
		// Pings are legal in the Anthropic grammar after message_start.
		ping: func(w *sse.Writer) { _ = w.WriteJSON("ping", anthropic.Ping()) },
	})
}

// dialect is what serving a non-OpenAI dialect over the neurons' chat
// completions takes: the request's translation, the answer's, and a stream
// translator with its writer and keep-alive.
type dialect[E any] struct {
	toChat func() (*openai.ChatRequest, []wire.Warning, error)
	answer func(*openai.ChatResponse) any
	stream func() translator[E]
	write  func(*sse.Writer, []E) error
	ping   func(*sse.Writer)
}

// serveTranslated serves one request of a translated dialect.
func serveTranslated[E any](g *Gateway, c echo.Context, d dialect[E]) error {
	chat, warnings, err := d.toChat()
	if err != nil {
		return err
	}
	g.logWarnings(c, warnings)
	uc, err := g.prepareChat(c, chat)
	if err != nil {
		return err
	}
	if chat.Stream {
		return pumpTranslated(g, c, uc, d.stream(), d.write, d.ping)
	}
	data, err := g.fetchJSON(c, uc)
	if err != nil {
		return err
	}
	var resp openai.ChatResponse
	if err := json.Unmarshal(data, &resp); err != nil {
		return openai.ServerError("the model server sent an unreadable answer")
	}
	return c.JSON(http.StatusOK, d.answer(&resp))
}

// translator turns an OpenAI chat chunk stream into another dialect's
// events (anthropic.StreamTranslator, responses.StreamTranslator).
type translator[E any] interface {
	Start() []E
	Chunk(*openai.ChatChunk) ([]E, error)
	Finish() []E
	Fail(error) []E
}

// pumpTranslated relays a streaming call through a dialect translator.
// While the request waits for a cold model, the translator's opening
// events go out once, then ping at every keep-alive.
func pumpTranslated[E any](g *Gateway, c echo.Context, uc *upstreamCall, tr translator[E], write func(*sse.Writer, []E) error, ping func(*sse.Writer)) error {
	out := newStreamOut(c)
	uc.waiting = func() {
		w := out.begin()
		_ = write(w, tr.Start())
		ping(w)
	}
	fail := func(w *sse.Writer, err error) { _ = write(w, tr.Fail(err)) }
	return g.pump(c, out, uc, pumpHooks{
		chunk: func(w *sse.Writer, data []byte, _ *chunkPeek) error {
			chunk, err := openai.DecodeChunk(data)
			if err != nil {
				fail(w, err)
				return err
			}
			evs, err := tr.Chunk(chunk)
			if err != nil {
				fail(w, err)
				return err
			}
			return write(w, evs)
		},
		done: func(w *sse.Writer) { _ = write(w, tr.Finish()) },
		fail: fail,
	})
}

// countTokens counts a Messages request's prompt with the model's own
// tokenizer and chat template, on a replica of the model.
func (g *Gateway) countTokens(c echo.Context) error {
	req, err := g.decodeAnthropic(c)
	if err != nil {
		return err
	}
	chat, warnings, err := anthropic.CountTokensToOpenAIChat(req)
	if err != nil {
		return err
	}
	g.logWarnings(c, warnings)
	key, err := g.resolve(c, req.Model)
	if err != nil {
		return err
	}
	chat.Model = key
	body, err := json.Marshal(neuronapi.TokenizeRequest{Model: key, Chat: chat})
	if err != nil {
		return err
	}
	data, err := g.fetchJSON(c, &upstreamCall{key: key, path: neuronapi.PathTokenize, body: body})
	if err != nil {
		return err
	}
	var tok neuronapi.TokenizeResponse
	if err := json.Unmarshal(data, &tok); err != nil {
		return openai.ServerError("the model server sent an unreadable token count")
	}
	info(c).prompt = 0 // counting is not processing
	return c.JSON(http.StatusOK, anthropic.CountTokensResponse{InputTokens: tok.Count})
}

// anthropicModelList is GET /v1/models as the Anthropic API shapes it.
func anthropicModelList(views []ModelView) map[string]any {
	type model struct {
		Type        string `json:"type"`
		ID          string `json:"id"`
		DisplayName string `json:"display_name"`
		CreatedAt   string `json:"created_at"`
	}
	data := []model{}
	for _, v := range views {
		for _, name := range v.Names {
			data = append(data, model{Type: "model", ID: name, DisplayName: name, CreatedAt: v.Model.CreationTimestamp.UTC().Format(time.RFC3339)})
		}
	}
	out := map[string]any{"data": data, "has_more": false, "first_id": nil, "last_id": nil}
	if len(data) > 0 {
		out["first_id"], out["last_id"] = data[0].ID, data[len(data)-1].ID
	}
	return out
}
