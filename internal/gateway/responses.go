package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/wire/openai"
)

func responsesErrorEvent(e *openai.Error) map[string]any {
	return map[string]any{"type": "error", "code": e.Code, "message": e.Message}
}

func (g *Gateway) responses(c echo.Context) error {
	return openai.NewError(501, openai.TypeInvalidRequest, "", "", "not implemented yet")
}
