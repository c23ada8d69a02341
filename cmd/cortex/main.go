// Command cortex shows a cortex fleet's health. Installed as kubectl-cortex
// it is the kubectl plugin `kubectl cortex`.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/helexa-ai/cortex/internal/cortexcli"
)

func main() {
	// The libraries' own logs are not for the user of a command line; what
	// matters comes back as errors.
	ctrllog.SetLogger(logr.Discard())
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cortexcli.Main(ctx, os.Args, cortexcli.IO{Out: os.Stdout, Err: os.Stderr, Getenv: os.Getenv, Terminal: isTerminal(os.Stdout)})
	stop()
	os.Exit(code)
}

func isTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
