// Command manager places cortex Models on NeuronNodes.
package main

import (
	"context"

	"k8s.io/client-go/rest"

	"github.com/helexa-ai/cortex/internal/cli"
	"github.com/helexa-ai/cortex/internal/manager"
)

func main() {
	cfg := manager.DefaultConfig()
	cli.Main("manager", cfg.BindFlags, func(ctx context.Context, restCfg *rest.Config) error {
		return manager.Run(ctx, cfg, restCfg, manager.Options{})
	})
}
