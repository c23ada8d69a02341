// Command manager places cortex Models on NeuronNodes.
package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/helexa-ai/cortex/internal/manager"
	"github.com/helexa-ai/cortex/internal/version"
)

func main() {
	cfg := manager.DefaultConfig()
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
	if err := manager.Run(ctx, cfg, restCfg, manager.Options{}); err != nil {
		logger.Error(err, "Manager stopped")
		os.Exit(1)
	}
}
