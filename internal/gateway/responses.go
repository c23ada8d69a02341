package gateway

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/wire/openai"
	"github.com/helexa-ai/cortex/internal/wire/responses"
	"github.com/helexa-ai/cortex/internal/wire/sse"
)

// responses serves the OpenAI Responses API (what Codex speaks) by
// translating to and from chat completions. Nothing is stored: clients
// resend their history (Codex does, with store:false), and
// previous_response_id is refused with a clear 400 by the translation.
func (g *Gateway) responses(c echo.Context) error {
	data, err := g.readBody(c)
	if err != nil {
		return err
	}
	var req responses.Request
	if err := openai.DecodeJSONBytes(data, &req); err != nil {
		return err
	}
	chat, warnings, err := responses.ToOpenAIChat(&req)
	if err != nil {
		return err
	}
	g.logWarnings(c, warnings)
	uc, err := g.prepareChat(c, chat)
	if err != nil {
		return err
	}
	if !chat.Stream {
		data, err := g.fetchJSON(c, uc)
		if err != nil {
			return err
		}
		var resp openai.ChatResponse
		if err := json.Unmarshal(data, &resp); err != nil {
			return openai.ServerError("the model server sent an unreadable answer")
		}
		return c.JSON(http.StatusOK, responses.FromOpenAIChat(&resp, &req))
	}

	tr := responses.NewStreamTranslator(&req, responses.ResponseID(""), g.clock.Now().Unix())
	// While the model cold-loads the client sees response.created and
	// response.in_progress, then SSE comments.
	return pumpTranslated(g, c, uc, tr, responses.WriteEvents, func(w *sse.Writer) { _ = w.KeepAlive() })
}
