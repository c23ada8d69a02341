package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/wire"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/responses"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// responses serves the OpenAI Responses API (what Codex speaks) by
// translating to and from chat completions. Nothing is stored: clients
// resend their history (Codex does, with store:false), and
// previous_response_id is refused with a clear 400 by the translation.
func (g *Gateway) responses(c echo.Context) error {
	req, err := decode[responses.Request](g, c)
	if err != nil {
		return err
	}
	return serveTranslated(g, c, dialect[responses.StreamEvent]{
		toChat: func() (*openai.ChatRequest, []wire.Warning, error) { return responses.ToOpenAIChat(req) },
		answer: func(resp *openai.ChatResponse) any { return responses.FromOpenAIChat(resp, req) },
		stream: func() translator[responses.StreamEvent] {
			return responses.NewStreamTranslator(req, responses.ResponseID(""), g.clock.Now().Unix())
		},
		write: responses.WriteEvents,
		// While the model cold-loads the client sees response.created and
		// response.in_progress, then SSE comments.
		ping: func(w *sse.Writer) { _ = w.KeepAlive() },
	})
}
