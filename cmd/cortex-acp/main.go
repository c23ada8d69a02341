// Command cortex-acp is a coding agent for editors: it speaks the Agent
// Client Protocol on stdin/stdout and works against a cortex gateway (or any
// OpenAI- or Anthropic-compatible endpoint).
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/helexa-ai/cortex/internal/acp/agent"
	"github.com/helexa-ai/cortex/internal/acp/config"
	"github.com/helexa-ai/cortex/internal/version"
)

func main() {
	os.Exit(run())
}

func run() int {
	fs := flag.NewFlagSet("cortex-acp", flag.ContinueOnError)
	cfgPath := fs.String("config", "", "config file (default $CORTEX_ACP_CONFIG, else $XDG_CONFIG_HOME/cortex-acp/config.toml)")
	logFile := fs.String("log-file", os.Getenv("CORTEX_ACP_LOG_FILE"), "write logs to this file instead of stderr")
	verbose := fs.Bool("v", false, "debug logging")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(os.Args[1:]); err != nil {
		return 2
	}
	if *showVersion {
		// The only thing cortex-acp ever prints to stdout that is not the
		// protocol: with -version it speaks no protocol.
		fmt.Println(version.String())
		return 0
	}
	// stdout carries the protocol alone; everything else goes to stderr or
	// the log file.
	logOut := os.Stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "cortex-acp: opening the log file: %v\n", err)
			return 1
		}
		defer func() { _ = f.Close() }()
		logOut = f
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: level}))
	cfg, err := config.Load(*cfgPath, log)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cortex-acp: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = agent.Run(ctx, agent.Options{Config: cfg, In: os.Stdin, Out: os.Stdout, Log: log, Version: version.Version})
	if err != nil {
		log.Error("Stopped", "error", err)
		return 1
	}
	return 0
}
