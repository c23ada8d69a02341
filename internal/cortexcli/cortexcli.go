// Package cortexcli is the `cortex` command line, also installed as the
// kubectl plugin `kubectl-cortex`. Its one command, status, shows the
// fleet's health from the cluster (kubeconfig) or from a gateway's
// GET /health.
package cortexcli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/version"
)

// Exit codes.
const (
	ExitOK = 0
	// ExitError: bad usage, or the report could not be had.
	ExitError = 1
	// ExitDegraded: the report says the fleet is degraded.
	ExitDegraded = 2
)

// Environment variables read as flag defaults.
const (
	envEndpoint = "CORTEX_ENDPOINT"
	envAPIKey   = "CORTEX_API_KEY"
)

// IO is what the program touches outside itself, so tests run it
// in-process.
type IO struct {
	Out, Err io.Writer
	// Getenv reads the environment.
	Getenv func(string) string
	// Terminal is true when Out is a terminal: --watch then redraws the
	// screen instead of appending.
	Terminal bool
}

// Main runs the command line args (args[0] is the program's name) and
// returns the exit code.
func Main(ctx context.Context, args []string, stdio IO) int {
	prog := programName(args)
	if stdio.Getenv == nil {
		stdio.Getenv = func(string) string { return "" }
	}
	if len(args) < 2 {
		usage(stdio.Err, prog)
		return ExitError
	}
	switch cmd := args[1]; cmd {
	case "status":
		return runStatus(ctx, prog, args[2:], stdio)
	case "version", "--version", "-version":
		_, _ = fmt.Fprintln(stdio.Out, version.String())
		return ExitOK
	case "help", "--help", "-help", "-h":
		usage(stdio.Out, prog)
		return ExitOK
	default:
		_, _ = fmt.Fprintf(stdio.Err, "%s: unknown command %q\n\n", prog, cmd)
		usage(stdio.Err, prog)
		return ExitError
	}
}

// programName is "kubectl cortex" when run as the kubectl plugin, so that
// messages name the command the user typed.
func programName(args []string) string {
	if len(args) == 0 {
		return "cortex"
	}
	base := filepath.Base(args[0])
	if strings.HasPrefix(base, "kubectl-") {
		return "kubectl " + strings.ReplaceAll(strings.TrimPrefix(base, "kubectl-"), "_", "-")
	}
	return "cortex"
}

func usage(w io.Writer, prog string) {
	_, _ = fmt.Fprintf(w, `%[1]s shows a cortex fleet's health.

Usage:
  %[1]s status [flags]   nodes, models, and what cannot serve
  %[1]s version          print the version

Run '%[1]s status --help' for the flags.
`, prog)
}

// StatusConfig is the configuration of the status command.
type StatusConfig struct {
	Kubeconfig     string
	Context        string
	Namespace      string
	AllNamespaces  bool
	Endpoint       string
	APIKey         string
	Output         string
	Watch          bool
	Interval       time.Duration
	RequestTimeout time.Duration
	// Width is the table's width in columns.
	Width int
}

// Bounds of --interval: a redraw more often than every second only loads
// the API server; one rarer than ten minutes is not watching.
const (
	minInterval = time.Second
	maxInterval = 10 * time.Minute
)

func (c *StatusConfig) bind(fs *flag.FlagSet, getenv func(string) string) {
	fs.StringVar(&c.Kubeconfig, "kubeconfig", "", "kubeconfig file (default $KUBECONFIG, else ~/.kube/config, else in-cluster)")
	fs.StringVar(&c.Context, "context", "", "kubeconfig context (default the current one)")
	fs.StringVar(&c.Namespace, "namespace", "", "namespace of the Models to show (default the context's)")
	fs.StringVar(&c.Namespace, "n", "", "shorthand for --namespace")
	fs.BoolVar(&c.AllNamespaces, "all-namespaces", false, "show the Models of every namespace")
	fs.BoolVar(&c.AllNamespaces, "A", false, "shorthand for --all-namespaces")
	fs.StringVar(&c.Endpoint, "endpoint", getenv(envEndpoint), "ask this gateway (base URL, e.g. https://llm.example.com) instead of the cluster (env "+envEndpoint+")")
	fs.StringVar(&c.APIKey, "api-key", getenv(envAPIKey), "API key for --endpoint (env "+envAPIKey+")")
	fs.StringVar(&c.Output, "output", OutputTable, "output format: table, json or yaml")
	fs.StringVar(&c.Output, "o", OutputTable, "shorthand for --output")
	fs.BoolVar(&c.Watch, "watch", false, "redraw every --interval until interrupted")
	fs.BoolVar(&c.Watch, "w", false, "shorthand for --watch")
	fs.DurationVar(&c.Interval, "interval", 2*time.Second, "time between two redraws with --watch (1s to 10m)")
	fs.DurationVar(&c.RequestTimeout, "request-timeout", 10*time.Second, "give up on the API server or gateway after this long")
	c.Width = 80
	if n, err := strconv.Atoi(getenv("COLUMNS")); err == nil && n > 0 {
		c.Width = n
	}
}

// validate checks the flags once; explicit says which flags were given.
func (c *StatusConfig) validate(explicit map[string]bool) error {
	switch c.Output {
	case OutputTable, OutputJSON, OutputYAML:
	default:
		return fmt.Errorf("--output %q: want table, json or yaml", c.Output)
	}
	if c.Interval < minInterval || c.Interval > maxInterval {
		return fmt.Errorf("--interval %s: must be between %s and %s", c.Interval, minInterval, maxInterval)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("--request-timeout %s: must be positive", c.RequestTimeout)
	}
	if c.AllNamespaces && (explicit["namespace"] || explicit["n"]) {
		return errors.New("--namespace and --all-namespaces exclude each other")
	}
	if c.Endpoint != "" {
		via := "--endpoint"
		if !explicit["endpoint"] {
			via = "$" + envEndpoint + " (unset it to read the cluster)"
		}
		for _, f := range []string{"kubeconfig", "context", "namespace", "n", "all-namespaces", "A"} {
			if explicit[f] {
				return fmt.Errorf("%s reads the cluster; with %s the gateway decides what it serves", flagName(f), via)
			}
		}
	}
	return nil
}

func runStatus(ctx context.Context, prog string, args []string, stdio IO) int {
	var cfg StatusConfig
	fs := flag.NewFlagSet(prog+" status", flag.ContinueOnError)
	fs.SetOutput(stdio.Err)
	cfg.bind(fs, stdio.Getenv)
	fs.Usage = func() {
		_, _ = fmt.Fprintf(fs.Output(), "Usage: %s status [flags]\n\nShows the fleet's health: each NeuronNode, each Model, and what cannot serve.\nExits %d when the fleet is degraded, %d on an error.\n\nFlags:\n", prog, ExitDegraded, ExitError)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return ExitOK
		}
		return ExitError // the flag package has said why
	}
	if fs.NArg() > 0 {
		_, _ = fmt.Fprintf(stdio.Err, "%s status: unexpected argument %q\n", prog, fs.Arg(0))
		return ExitError
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	if err := cfg.validate(explicit); err != nil {
		_, _ = fmt.Fprintf(stdio.Err, "%s status: %v\n", prog, err)
		return ExitError
	}
	src, err := newSource(cfg)
	if err != nil {
		_, _ = fmt.Fprintf(stdio.Err, "%s status: %v\n", prog, err)
		return ExitError
	}
	if cfg.Watch {
		return watch(ctx, cfg, src, stdio, prog)
	}
	r, err := src.Report(ctx)
	if err != nil {
		_, _ = fmt.Fprintf(stdio.Err, "%s status: %v\n", prog, err)
		return ExitError
	}
	if err := Render(stdio.Out, r, cfg.Output, src.Scope(), cfg.Width); err != nil {
		_, _ = fmt.Fprintf(stdio.Err, "%s status: %v\n", prog, err)
		return ExitError
	}
	if r.Status == fleet.StatusDegraded {
		return ExitDegraded
	}
	return ExitOK
}

func newSource(cfg StatusConfig) (source, error) {
	if cfg.Endpoint != "" {
		return newEndpointSource(cfg.Endpoint, cfg.APIKey, cfg.RequestTimeout)
	}
	return newClusterSource(cfg)
}

// watch redraws until ctx ends (Ctrl-C), which is a clean exit. A failed
// round is shown and retried at the next tick: watching is for riding
// out trouble.
func watch(ctx context.Context, cfg StatusConfig, src source, stdio IO, prog string) int {
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	for {
		r, err := src.Report(ctx)
		if ctx.Err() != nil {
			return ExitOK
		}
		switch {
		case cfg.Output != OutputTable:
			if err != nil {
				_, _ = fmt.Fprintf(stdio.Err, "%s status: %v\n", prog, err)
			} else {
				if cfg.Output == OutputYAML {
					_, _ = io.WriteString(stdio.Out, "---\n")
				}
				_ = Render(stdio.Out, r, cfg.Output, src.Scope(), cfg.Width)
			}
		default:
			var b strings.Builder
			if stdio.Terminal {
				b.WriteString("\x1b[H\x1b[2J") // home, clear screen
			}
			fmt.Fprintf(&b, "Every %s: %s status    %s\n\n", cfg.Interval, prog, time.Now().Format(time.TimeOnly))
			if err != nil {
				writeWrapped(&b, "error: ", err.Error(), cfg.Width)
			} else {
				b.WriteString(Table(r, src.Scope(), cfg.Width))
			}
			if !stdio.Terminal {
				b.WriteString("\n")
			}
			_, _ = io.WriteString(stdio.Out, b.String())
		}
		select {
		case <-ctx.Done():
			return ExitOK
		case <-tick.C:
		}
	}
}

// flagName spells a flag as a user would type it.
func flagName(name string) string {
	if len(name) == 1 {
		return "-" + name
	}
	return "--" + name
}
