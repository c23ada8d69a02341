package neuron

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/rest"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/envflag"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// Config is the neuron's configuration: flags (with CORTEX_<FLAG>
// environment fallbacks) and, at the end, dependencies a caller injects.
type Config struct {
	// Addr is the listen address of the API (control, inference, metrics).
	Addr string
	// NodeName names the NeuronNode (default: NODE_NAME, else the host
	// name).
	NodeName string
	// PodIP is the address other components reach this neuron on (default:
	// POD_IP); with the port of Addr it makes the advertised endpoint.
	PodIP string
	// AdvertiseURL overrides the endpoint written into the NeuronNode.
	AdvertiseURL string

	// TokenFile holds the bearer token every API call but /healthz,
	// /readyz and /metrics must carry; Token is the token itself (the file
	// wins).
	TokenFile string
	Token     string
	// TokenRecheck is how often the token file is looked at again, so a
	// rotated Secret takes effect without a restart.
	TokenRecheck time.Duration
	// TokenGrace is how long the previous token stays good after the
	// file changes (negative: not at all), so callers that see the new
	// Secret later than this pod are not refused meanwhile.
	TokenGrace time.Duration
	// AllowUnauthenticated serves the API without a token. Without a token
	// and without it, the neuron refuses to start.
	AllowUnauthenticated bool

	// CacheDir holds downloaded models.
	CacheDir string
	// HFEndpoint and HFToken configure hf:// sources (defaults: HF_ENDPOINT
	// and HF_TOKEN).
	HFEndpoint string
	HFToken    string

	// MemoryLimit caps the memory a CPU host advertises, in bytes (0: all
	// of host RAM). The flag takes quantities: 8Gi, 512Mi.
	MemoryLimit int64
	// DisableNVML reports the CPU device even where NVIDIA GPUs exist.
	DisableNVML bool
	// LibraryPath is the engine's folder list of ggml backend libraries
	// (the --library-path flag); empty: the loader's default. The neuron
	// only reads it to report what was found there and not loaded.
	LibraryPath string

	// Threads is the CPU threads per model (0: the engine's default).
	Threads int
	// QueueSize bounds requests waiting for a sequence per model (0: the
	// engine's default, 4 × parallel).
	QueueSize int
	// MaxBodyBytes bounds request bodies.
	MaxBodyBytes int64
	// MaxImageBytes and MaxImagePixels bound one image of a request to a
	// vision model: its encoded size and its width × height (0: the chat
	// package's defaults).
	MaxImageBytes  int64
	MaxImagePixels int64
	// KeepAliveInterval is how often a stream that has nothing to send yet
	// (queued, or processing a long prompt) gets a ": keep-alive" comment.
	KeepAliveInterval time.Duration
	// UnloadDrainTimeout is how long an unload lets requests in flight
	// finish before it cuts them off.
	UnloadDrainTimeout time.Duration
	// ShutdownTimeout bounds how long SIGTERM waits for requests in flight.
	ShutdownTimeout time.Duration
	// ReadHeaderTimeout, ReadTimeout and IdleTimeout are the HTTP server's.
	// There is no write timeout: it would cut long streams.
	ReadHeaderTimeout time.Duration
	ReadTimeout       time.Duration
	IdleTimeout       time.Duration
	// ClientWriteTimeout bounds how long one write to a client may block
	// (a client that stopped reading); the answer is then abandoned and
	// its sequence freed. 0: no bound.
	ClientWriteTimeout time.Duration

	// Kubeconfig reaches the cluster for registration; without it the
	// in-cluster configuration is used when running in a pod, and
	// registration is off otherwise.
	Kubeconfig string
	// DisableRegistration turns registration off even with cluster access.
	DisableRegistration bool
	// HeartbeatInterval is how often the NeuronNode status is rewritten.
	HeartbeatInterval time.Duration

	// Dependencies, injected rather than configured.

	// Engine runs the models (required; cmd/neuron passes llama.cpp,
	// tests pass enginefake).
	Engine engine.Engine
	// Devices is the device inventory (nil: NVML, else the CPU).
	Devices devices.Inventory
	// Listener serves the API instead of listening on Addr.
	Listener net.Listener
	// RESTConfig reaches the cluster instead of Kubeconfig/in-cluster.
	RESTConfig *rest.Config
	// HTTPClient downloads models (nil: a client without an overall
	// timeout; stalled downloads are caught by the resolver).
	HTTPClient *http.Client
}

// DefaultConfig returns the defaults the flags start from, with the
// Kubernetes downward-API and Hugging Face variables already applied.
func DefaultConfig() Config {
	c := Config{
		Addr:               fmt.Sprintf(":%d", neuronapi.DefaultPort),
		NodeName:           os.Getenv("NODE_NAME"),
		PodIP:              os.Getenv("POD_IP"),
		HFEndpoint:         os.Getenv("HF_ENDPOINT"),
		HFToken:            os.Getenv("HF_TOKEN"),
		CacheDir:           defaultCacheDir(),
		MaxBodyBytes:       openai.DefaultBodyLimit,
		MaxImageBytes:      chat.DefaultMaxImageBytes,
		MaxImagePixels:     chat.DefaultMaxImagePixels,
		KeepAliveInterval:  5 * time.Second,
		UnloadDrainTimeout: 5 * time.Second,
		ShutdownTimeout:    25 * time.Second,
		ReadHeaderTimeout:  10 * time.Second,
		ReadTimeout:        2 * time.Minute,
		IdleTimeout:        2 * time.Minute,
		ClientWriteTimeout: time.Minute,
		HeartbeatInterval:  10 * time.Second,
		TokenRecheck:       neuronapi.DefaultTokenRecheck,
		TokenGrace:         neuronapi.DefaultTokenGrace,
		Kubeconfig:         os.Getenv("KUBECONFIG"),
	}
	if c.NodeName == "" {
		h, _ := os.Hostname()
		c.NodeName = strings.ToLower(h) // object names are lower case
	}
	return c
}

func defaultCacheDir() string {
	if d, err := os.UserCacheDir(); err == nil {
		return d + "/cortex/models"
	}
	return "/var/cache/cortex/models"
}

// BindFlags registers the flags on fs.
func (c *Config) BindFlags(fs *flag.FlagSet) {
	envflag.StringVar(fs, &c.Addr, "addr", "address serving the neuron API")
	envflag.StringVar(fs, &c.NodeName, "node-name", "NeuronNode name (default $NODE_NAME or the host name)")
	envflag.StringVar(fs, &c.PodIP, "pod-ip", "address advertised to the cluster (default $POD_IP)")
	envflag.StringVar(fs, &c.AdvertiseURL, "advertise-url", "endpoint advertised to the cluster, overriding pod-ip and addr")
	envflag.StringVar(fs, &c.TokenFile, "token-file", "file holding the API bearer token")
	envflag.StringVar(fs, &c.Token, "token", "API bearer token (prefer token-file)")
	envflag.DurationVar(fs, &c.TokenRecheck, "token-recheck", "how often the token file is looked at again")
	envflag.DurationVar(fs, &c.TokenGrace, "token-grace", "how long the previous token stays good after a rotation (negative: not at all)")
	envflag.BoolVar(fs, &c.AllowUnauthenticated, "allow-unauthenticated", "serve the API without a bearer token")
	envflag.StringVar(fs, &c.CacheDir, "cache-dir", "directory for downloaded models")
	envflag.StringVar(fs, &c.HFEndpoint, "hf-endpoint", "Hugging Face endpoint for hf:// sources (default $HF_ENDPOINT or https://huggingface.co)")
	envflag.StringVar(fs, &c.HFToken, "hf-token", "Hugging Face token (default $HF_TOKEN)")
	quantityVar(fs, &c.MemoryLimit, "memory-limit", "cap on the memory a CPU host advertises, e.g. 8Gi (0: all)")
	envflag.BoolVar(fs, &c.DisableNVML, "disable-nvml", "ignore NVIDIA GPUs and serve from the CPU")
	envflag.IntVar(fs, &c.Threads, "threads", "CPU threads per model (0: engine default)")
	envflag.IntVar(fs, &c.QueueSize, "queue-size", "requests waiting per model before 429 (0: 4 x parallel)")
	envflag.Int64Var(fs, &c.MaxBodyBytes, "max-body-bytes", "largest accepted request body")
	envflag.Int64Var(fs, &c.MaxImageBytes, "max-image-bytes", "largest encoded image in a request to a vision model")
	envflag.Int64Var(fs, &c.MaxImagePixels, "max-image-pixels", "largest image (width x height) in a request to a vision model")
	envflag.DurationVar(fs, &c.KeepAliveInterval, "keep-alive-interval", "SSE keep-alive period while a stream has nothing to send")
	envflag.DurationVar(fs, &c.UnloadDrainTimeout, "unload-drain-timeout", "how long an unload waits for requests in flight")
	envflag.DurationVar(fs, &c.ShutdownTimeout, "shutdown-timeout", "how long shutdown waits for requests in flight")
	envflag.DurationVar(fs, &c.ReadHeaderTimeout, "read-header-timeout", "HTTP read-header timeout")
	envflag.DurationVar(fs, &c.ReadTimeout, "read-timeout", "HTTP timeout for reading a whole request")
	envflag.DurationVar(fs, &c.IdleTimeout, "idle-timeout", "HTTP keep-alive idle timeout")
	envflag.DurationVar(fs, &c.ClientWriteTimeout, "client-write-timeout", "abandon an answer when one write to its client blocks this long (the client stopped reading); 0: no bound")
	envflag.StringVar(fs, &c.Kubeconfig, "kubeconfig", "kubeconfig for registration (default $KUBECONFIG, else in-cluster)")
	envflag.BoolVar(fs, &c.DisableRegistration, "disable-registration", "do not create or update the NeuronNode")
	envflag.DurationVar(fs, &c.HeartbeatInterval, "heartbeat-interval", "how often the NeuronNode status is written")
}

// Validate checks the configuration once, before anything starts.
func (c *Config) Validate() error {
	var errs []error
	if c.Engine == nil {
		errs = append(errs, errors.New("no engine"))
	}
	if c.Listener == nil {
		if _, _, err := net.SplitHostPort(c.Addr); err != nil {
			errs = append(errs, fmt.Errorf("addr %q: %w", c.Addr, err))
		}
	}
	if c.Token == "" && c.TokenFile == "" && !c.AllowUnauthenticated {
		errs = append(errs, errors.New("no API token: set --token-file (or CORTEX_TOKEN), or --allow-unauthenticated"))
	}
	if c.CacheDir == "" {
		errs = append(errs, errors.New("cache-dir is empty"))
	}
	if c.MemoryLimit < 0 {
		errs = append(errs, errors.New("memory-limit is negative"))
	}
	if c.Threads < 0 || c.QueueSize < 0 {
		errs = append(errs, errors.New("threads and queue-size must not be negative"))
	}
	if c.MaxBodyBytes <= 0 {
		errs = append(errs, errors.New("max-body-bytes must be positive"))
	}
	if c.MaxImageBytes < 0 || c.MaxImagePixels < 0 {
		errs = append(errs, errors.New("max-image-bytes and max-image-pixels must not be negative"))
	}
	for name, d := range map[string]time.Duration{
		"keep-alive-interval": c.KeepAliveInterval, "unload-drain-timeout": c.UnloadDrainTimeout,
		"shutdown-timeout": c.ShutdownTimeout, "read-header-timeout": c.ReadHeaderTimeout,
		"read-timeout": c.ReadTimeout, "idle-timeout": c.IdleTimeout, "heartbeat-interval": c.HeartbeatInterval,
	} {
		if d <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", name))
		}
	}
	if c.ClientWriteTimeout < 0 {
		errs = append(errs, errors.New("client-write-timeout must not be negative"))
	}
	if c.NodeName == "" {
		errs = append(errs, errors.New("node-name is empty and the host name is unknown"))
	} else if len(c.NodeName) > 253 || strings.ToLower(c.NodeName) != c.NodeName {
		errs = append(errs, fmt.Errorf("node-name %q is not a valid Kubernetes object name", c.NodeName))
	}
	return errors.Join(errs...)
}

// quantityValue parses Kubernetes quantities (8Gi, 500M, 1073741824).
type quantityValue struct{ p *int64 }

func (q quantityValue) String() string {
	if q.p == nil || *q.p == 0 {
		return "0"
	}
	return resource.NewQuantity(*q.p, resource.BinarySI).String()
}

func (q quantityValue) Set(s string) error {
	v, err := resource.ParseQuantity(s)
	if err != nil {
		return fmt.Errorf("parsing quantity %q: %w", s, err)
	}
	*q.p = v.Value()
	return nil
}

func quantityVar(fs *flag.FlagSet, p *int64, name, usage string) {
	env := envflag.Name(name)
	if v, ok := os.LookupEnv(env); ok {
		_ = quantityValue{p}.Set(v) // an unparsable variable is ignored, as envflag does
	}
	fs.Var(quantityValue{p}, name, usage+" (env "+env+")")
}
