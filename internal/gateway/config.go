package gateway

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/helexa-ai/cortex/internal/envflag"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Config is the gateway's configuration.
type Config struct {
	// Addr serves the API (OpenAI and Anthropic on one port).
	Addr string
	// MetricsAddr serves /metrics ("" or "0" disables).
	MetricsAddr string
	// APIKeysFile lists accepted API keys: one per line ("#" comments,
	// blank lines ignored; "name:key" lines name the key in logs), or the
	// structured YAML/JSON format with per-key Models and limits (keys.go).
	APIKeysFile string
	// KeyLimitReplicas is how many gateway replicas share each key's
	// limits (each enforces limit ÷ replicas).
	KeyLimitReplicas int
	// AllowAnonymous serves requests without a key. It must be asked for
	// explicitly; without keys and without it, Run refuses to start.
	AllowAnonymous bool
	// NeuronTokenFile holds the bearer token neurons require.
	NeuronTokenFile string
	// NeuronToken is the token itself (tests; the file wins).
	NeuronToken string
	// NeuronTokenRecheck is how often the token file is read again;
	// NeuronTokenGrace how long the previous token is still tried after a
	// neuron refuses the current one (neuronapi.TokenSource).
	NeuronTokenRecheck time.Duration
	NeuronTokenGrace   time.Duration
	// Namespace limits the Models served to one namespace ("" = all).
	Namespace string
	// ColdStartTimeout bounds how long a request waits for its Model to
	// load.
	ColdStartTimeout time.Duration
	// DemandInterval is the least time between two demand-signal writes for
	// one Model.
	DemandInterval time.Duration
	// StreamIdleTimeout ends an upstream stream that sends nothing for this
	// long (a read timeout, not a total one: long generations are fine).
	StreamIdleTimeout time.Duration
	// UpstreamHeaderTimeout bounds the wait for a neuron's response headers
	// on non-streaming requests, whose headers come only with the answer.
	UpstreamHeaderTimeout time.Duration
	// KeepAliveInterval is how often a streaming client waiting for a cold
	// Model or a long prefill gets a keep-alive.
	KeepAliveInterval time.Duration
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// MaxAttempts is how many replicas one request may try before its
	// first byte.
	MaxAttempts int
	// UnreachableHold is how long a request whose every replica refused
	// its connection is held for the fleet to replace them (a neuron
	// killed, or hung, with the only replicas of a Model), as a request for
	// a cold Model is held for its load; 0 fails it at once with a 502.
	// It should cover the time for the dead node to turn NotReady
	// (the manager's --heartbeat-stale-after, 30 s) plus a manager
	// failover (a 15 s lease) and the new replica's load.
	UnreachableHold time.Duration
	// ClientWriteTimeout bounds how long one write to a client may block
	// (a client that stopped reading); the answer is then abandoned and
	// what it held released. 0: no bound.
	ClientWriteTimeout time.Duration
	// ShutdownTimeout bounds how long shutdown waits for streams to finish.
	ShutdownTimeout time.Duration
	// DrainPeriod is how long, at shutdown, every response asks its
	// client to close the connection before idle connections are closed
	// (drain.go); it ends early once no connection is open. 0: close them
	// at once.
	DrainPeriod time.Duration
	// PrefixImbalance is how much longer a request may wait for its first
	// token at the replica that served its longest known prefix than at
	// the replica that would start it soonest, and still go there: 1.5
	// allows 2.5× the wait. Higher finds more prompts in a replica's KV
	// cache, lower serves each request sooner at the price of the next
	// one's prefill (balancer.go; docs/fleet.md has the trade-off
	// measured).
	PrefixImbalance float64
	// Peers are the other gateway replicas, as host:port of their
	// PeerAddr, comma-separated; a host may be a DNS name that resolves to
	// every replica (a headless Service), this one included. Each replica
	// shares the prompt prefixes it routed with them (prefixsync.go).
	// Empty: no sharing.
	Peers string
	// PeerAddr serves the peers' prefix batches (only with Peers).
	PeerAddr string
	// PeerSyncInterval is how often routed prefixes are sent to the peers.
	PeerSyncInterval time.Duration
	// Overload: see admission.go.
	Admission AdmissionConfig
	// ReadHeaderTimeout and ReadTimeout bound reading a request's headers
	// and its whole request (headers and body), so a client that trickles
	// either cannot hold a connection forever. Go clears the read deadline
	// once the body is read, so neither cuts a stream.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
}

// DefaultConfig returns the defaults the flags start from.
func DefaultConfig() Config {
	return Config{
		Admission:             DefaultAdmissionConfig(),
		Addr:                  ":8080",
		MetricsAddr:           ":9090",
		ColdStartTimeout:      10 * time.Minute,
		DemandInterval:        5 * time.Second,
		StreamIdleTimeout:     5 * time.Minute,
		UpstreamHeaderTimeout: 30 * time.Minute,
		KeepAliveInterval:     10 * time.Second,
		MaxBodyBytes:          32 << 20,
		MaxAttempts:           3,
		UnreachableHold:       90 * time.Second,
		ClientWriteTimeout:    time.Minute,
		ShutdownTimeout:       2 * time.Minute,
		DrainPeriod:           5 * time.Second,
		PrefixImbalance:       DefaultPrefixImbalance,
		PeerAddr:              ":8081",
		PeerSyncInterval:      DefaultPeerSyncInterval,
		KeyLimitReplicas:      1,
		NeuronTokenRecheck:    neuronapi.DefaultTokenRecheck,
		NeuronTokenGrace:      neuronapi.DefaultTokenGrace,
		ReadHeaderTimeout:     10 * time.Second,
		ReadTimeout:           2 * time.Minute,
	}
}

// BindFlags registers the flags on fs, with CORTEX_<FLAG> environment
// fallbacks (dashes as underscores).
func (c *Config) BindFlags(fs *flag.FlagSet) {
	envflag.StringVar(fs, &c.Addr, "addr", "address serving the API")
	envflag.StringVar(fs, &c.MetricsAddr, "metrics-addr", "address serving /metrics; 0 disables")
	envflag.StringVar(fs, &c.APIKeysFile, "api-keys-file", "file of accepted API keys: one per line, or YAML/JSON with per-key models and limits")
	envflag.IntVar(fs, &c.KeyLimitReplicas, "key-limit-replicas", "gateway replicas that share each API key's limits")
	envflag.BoolVar(fs, &c.AllowAnonymous, "allow-anonymous", "serve requests without an API key")
	envflag.StringVar(fs, &c.NeuronTokenFile, "neuron-token-file", "file holding the neurons' bearer token (re-read while running)")
	envflag.DurationVar(fs, &c.NeuronTokenRecheck, "neuron-token-recheck", "how often the neuron token file is read again")
	envflag.DurationVar(fs, &c.NeuronTokenGrace, "neuron-token-grace", "how long the previous neuron token is still tried after a rotation")
	envflag.StringVar(fs, &c.Namespace, "namespace", "serve only the Models of this namespace (default all)")
	envflag.DurationVar(fs, &c.ColdStartTimeout, "cold-start-timeout", "how long a request waits for its model to load")
	envflag.DurationVar(fs, &c.DemandInterval, "demand-interval", "least time between demand-signal writes per model")
	envflag.DurationVar(fs, &c.StreamIdleTimeout, "stream-idle-timeout", "end an upstream stream silent for this long")
	envflag.DurationVar(fs, &c.UpstreamHeaderTimeout, "upstream-header-timeout", "bound on waiting for a non-streaming answer")
	envflag.DurationVar(fs, &c.KeepAliveInterval, "keep-alive-interval", "keep-alive period for waiting streaming clients")
	envflag.Int64Var(fs, &c.MaxBodyBytes, "max-body-bytes", "largest accepted request body")
	envflag.IntVar(fs, &c.MaxAttempts, "max-attempts", "replicas one request may try before its first byte")
	envflag.DurationVar(fs, &c.ClientWriteTimeout, "client-write-timeout", "abandon an answer when one write to its client blocks this long (the client stopped reading); 0: no bound")
	envflag.DurationVar(fs, &c.UnreachableHold, "unreachable-hold", "how long a request is held when every replica of its model is unreachable; 0 fails it at once")
	envflag.DurationVar(fs, &c.ShutdownTimeout, "shutdown-timeout", "how long shutdown waits for streams")
	envflag.DurationVar(fs, &c.DrainPeriod, "drain-period", "at shutdown, how long responses ask clients to close their connections before idle ones are closed (ends once none is open); 0: at once")
	envflag.Float64Var(fs, &c.PrefixImbalance, "prefix-imbalance", "how much longer a request may wait for its first token at the replica that served its prompt prefix than at the soonest replica, and still go there (1.5: 2.5× the wait; 0: only where it starts soonest)")
	envflag.StringVar(fs, &c.Peers, "peers", "the other gateway replicas' peer addresses, host:port, comma-separated (a DNS name may stand for all of them); each replica shares the prompt prefixes it routed with them. Empty: no sharing")
	envflag.StringVar(fs, &c.PeerAddr, "peer-addr", "address serving the peers' prefix batches (with --peers)")
	envflag.DurationVar(fs, &c.PeerSyncInterval, "peer-sync-interval", "how often routed prompt prefixes are sent to the peers")
	c.Admission.bindFlags(fs)
	envflag.DurationVar(fs, &c.ReadHeaderTimeout, "read-header-timeout", "HTTP timeout for reading a request's headers")
	envflag.DurationVar(fs, &c.ReadTimeout, "read-timeout", "HTTP timeout for reading a whole request")
}

// Validate checks the configuration once.
func (c *Config) Validate() error {
	var errs []error
	if c.Addr == "" {
		errs = append(errs, errors.New("addr is required"))
	}
	if c.APIKeysFile == "" && !c.AllowAnonymous {
		errs = append(errs, errors.New("no API keys: set --api-keys-file, or --allow-anonymous to serve without keys"))
	}
	for name, d := range map[string]time.Duration{
		"cold-start-timeout": c.ColdStartTimeout, "demand-interval": c.DemandInterval,
		"stream-idle-timeout": c.StreamIdleTimeout, "keep-alive-interval": c.KeepAliveInterval,
		"upstream-header-timeout": c.UpstreamHeaderTimeout, "shutdown-timeout": c.ShutdownTimeout,
		"read-header-timeout": c.ReadHeaderTimeout, "read-timeout": c.ReadTimeout,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("max-body-bytes must be positive"))
	}
	if c.KeyLimitReplicas < 1 {
		errs = append(errs, errors.New("key-limit-replicas must be at least 1"))
	}
	if err := c.Admission.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MaxAttempts < 1 {
		errs = append(errs, errors.New("max-attempts must be at least 1"))
	}
	if c.ClientWriteTimeout < 0 {
		errs = append(errs, errors.New("client-write-timeout must not be negative"))
	}
	if c.UnreachableHold < 0 {
		errs = append(errs, errors.New("unreachable-hold must not be negative"))
	}
	if c.DrainPeriod < 0 {
		errs = append(errs, errors.New("drain-period must not be negative"))
	}
	if !(c.PrefixImbalance >= 0 && c.PrefixImbalance <= 10) { // NaN fails too
		errs = append(errs, fmt.Errorf("prefix-imbalance must be between 0 and 10, got %v", c.PrefixImbalance))
	}
	if c.Peers != "" {
		for _, p := range c.PeerList() {
			if host, port, err := net.SplitHostPort(p); err != nil || host == "" || port == "" {
				errs = append(errs, fmt.Errorf("peers: %q is not host:port", p))
			}
		}
		if c.PeerAddr == "" {
			errs = append(errs, errors.New("peer-addr is required with peers"))
		}
		if c.PeerSyncInterval < 10*time.Millisecond {
			errs = append(errs, fmt.Errorf("peer-sync-interval must be at least 10ms, got %s", c.PeerSyncInterval))
		}
	}
	return errors.Join(errs...)
}

// PeerList is Peers split at commas, blanks dropped.
func (c *Config) PeerList() []string {
	var out []string
	for p := range strings.SplitSeq(c.Peers, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
