// Package cli is the shared start of the cluster-facing binaries (manager,
// gateway): flags, zap logging, the kubeconfig, signal handling, and one
// place that exits.
package cli

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/helexa-ai/cortex/internal/version"
)

// Main binds the binary's flags, parses the command line, and runs run
// until SIGINT or SIGTERM; a failure is logged and exits with status 1.
func Main(name string, bind func(*flag.FlagSet), run func(ctx context.Context, restCfg *rest.Config) error) {
	bind(flag.CommandLine)
	zopts := zap.Options{}
	zopts.BindFlags(flag.CommandLine)
	showVersion := flag.Bool("version", false, "print the version and exit")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.String())
		return
	}
	logger := zap.New(zap.UseFlagOptions(&zopts)).WithName(name)
	ctrl.SetLogger(logger)
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), logger)
	restCfg, err := ctrl.GetConfig()
	if err != nil {
		logger.Error(err, "Loading kubeconfig")
		os.Exit(1)
	}
	if err := run(ctx, restCfg); err != nil {
		logger.Error(err, "Stopped")
		os.Exit(1)
	}
}
