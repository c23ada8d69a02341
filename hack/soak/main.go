// Command soak is `make soak`: sustained mixed traffic (OpenAI chat, plain
// and streamed, completions, Responses, Anthropic messages, plain and
// streamed, a Model that scales to zero, clients that hang up mid-stream
// and clients that read slowly) through two gateway replicas behind a
// loopback balancer, on the real local stack (API server and etcd, two
// managers with leader election, three CPU neurons running stories260K),
// while it injects faults one at a time and then together. It prints one
// table per run (internal/soak has the details) and stops by itself: the
// run is bounded by -max-duration and -max-requests.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/helexa-ai/cortex/internal/soak"
	"github.com/helexa-ai/cortex/internal/testenv"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

func run() error {
	root := testenv.RepoRoot()
	var cfg soak.Config
	faults := flag.String("faults", strings.Join(soak.FaultNames(), ","), "faults to inject, in order")
	flag.IntVar(&cfg.Workers, "workers", 6, "clients sending requests back to back")
	flag.IntVar(&cfg.MaxRequests, "max-requests", 20000, "stop after this many requests")
	flag.DurationVar(&cfg.MaxDuration, "max-duration", 12*time.Minute, "stop after this long")
	flag.DurationVar(&cfg.Steady, "steady", 10*time.Second, "traffic before, between and after the faults")
	model := flag.String("model", filepath.Join(root, "..", "shared", "models", "stories260K.gguf"), "stories260K.gguf")
	verbose := flag.Bool("v", false, "copy every process's output to stderr")
	keep := flag.Bool("keep", false, "keep the scratch directory (logs of every process) and print its path")
	flag.Parse()
	cfg.Faults = strings.Split(*faults, ",")
	cfg.Root, cfg.Model = root, *model
	cfg.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	if *verbose {
		cfg.Logs = os.Stderr
	}

	ctrllog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	work, err := os.MkdirTemp("", "cortex-soak-")
	if err != nil {
		return err
	}
	defer func() {
		if *keep {
			cfg.Logf("Logs kept in %s", filepath.Join(work, "stack", "logs"))
			return
		}
		_ = os.RemoveAll(work)
	}()
	cfg.Work = work
	if cfg.Assets, err = testenv.Assets(); err != nil {
		return err
	}
	cfg.Logf("Building manager, gateway and neuron…")
	cfg.BinDir = filepath.Join(work, "bin")
	build := exec.CommandContext(ctx, "go", "build", "-o", cfg.BinDir+"/", "./cmd/manager", "./cmd/gateway", "./cmd/neuron")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building: %w", err)
	}
	rep, err := soak.Run(ctx, cfg)
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	fmt.Printf("soak on %s (%d CPUs, %s/%s), faults: %s\n\n", host, runtime.NumCPU(), runtime.GOOS, runtime.GOARCH, *faults)
	rep.Print(os.Stdout)
	return nil
}
