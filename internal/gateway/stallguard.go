package gateway

import (
	"github.com/labstack/echo/v4"

	"github.com/helexa-ai/cortex/internal/stallguard"
)

// guardWrites bounds how long one write to the client may block
// (--client-write-timeout, see package stallguard): a client that stopped
// reading gets its answer abandoned, and the relay, its upstream
// connection and the neuron's sequence are released.
func (g *Gateway) guardWrites(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if d := g.cfg.ClientWriteTimeout; d > 0 {
			c.Response().Writer = stallguard.Wrap(c.Response().Writer, d, g.clock.Now)
		}
		return next(c)
	}
}
