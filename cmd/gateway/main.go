// Command gateway serves the OpenAI and Anthropic APIs for a cortex fleet.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/helexa-ai/cortex/internal/gateway"
	"github.com/helexa-ai/cortex/internal/version"
)

func main() {
	cfg := gateway.DefaultConfig()
	cfg.BindFlags(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String())
		return
	}
	logger := zap.New(zap.UseFlagOptions(&zopts))
	ctrl.SetLogger(logger)
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), logger)
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		logger.Error(err, "Loading kubeconfig")
		os.Exit(1)
	}
	if err := gateway.Run(ctx, cfg, restCfg, gateway.Options{}); err != nil {
		logger.Error(err, "Gateway stopped")
		os.Exit(1)
	}
}
