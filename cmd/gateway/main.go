// Command gateway serves the OpenAI and Anthropic APIs for a cortex fleet.
package main

import (
	"context"

	"k8s.io/client-go/rest"

	"github.com/helexa-ai/cortex/internal/cli"
	"github.com/helexa-ai/cortex/internal/gateway"
)

func main() {
	cfg := gateway.DefaultConfig()
	cli.Main("gateway", cfg.BindFlags, func(ctx context.Context, restCfg *rest.Config) error {
		return gateway.Run(ctx, cfg, restCfg, gateway.Options{})
	})
}
