// Command neuron runs on every GPU host: it serves the models placed there
// through an OpenAI-compatible API and registers the host as a NeuronNode.
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"os"

	"github.com/go-logr/logr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"

	"github.com/helexa-ai/cortex/internal/engine/llamacpp"
	"github.com/helexa-ai/cortex/internal/envflag"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/version"
)

func main() {
	// NVML numbers GPUs in PCI bus order, CUDA by default fastest first; the
	// manager places by NVML index and the engine loads by CUDA ordinal, so
	// make them agree before CUDA initialises.
	if os.Getenv("CUDA_DEVICE_ORDER") == "" {
		_ = os.Setenv("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
	}
	// A flag set of our own: controller-runtime registers its own
	// --kubeconfig on the global one, which the neuron defines itself.
	fs := flag.NewFlagSet("neuron", flag.ExitOnError)
	cfg := neuron.DefaultConfig()
	cfg.BindFlags(fs)
	var libPath string
	envflag.StringVar(fs, &libPath, "library-path", "folder of ggml backend libraries (CUDA, CPU variants)")
	zopts := zap.Options{}
	zopts.BindFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	_ = fs.Parse(os.Args[1:])
	if *showVersion {
		fmt.Println(version.String())
		return
	}
	logger := zap.New(zap.UseFlagOptions(&zopts))
	ctrl.SetLogger(logger)
	eng, err := llamacpp.New(llamacpp.Options{
		Logger:      slog.New(logr.ToSlogHandler(logger.WithName("engine"))),
		LibraryPath: libPath,
	})
	if err != nil {
		logger.Error(err, "Starting the inference engine")
		os.Exit(1)
	}
	cfg.Engine = eng
	cfg.LibraryPath = libPath
	ctx := ctrl.LoggerInto(ctrl.SetupSignalHandler(), logger)
	if err := neuron.Run(ctx, cfg); err != nil {
		logger.Error(err, "Neuron stopped")
		os.Exit(1)
	}
}
