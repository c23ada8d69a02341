// Package localstack runs the whole of cortex on one machine: a real
// kube-apiserver and etcd (the envtest binaries) with the CRDs installed, the
// manager, the gateway and several neurons as real processes on loopback
// (CPU engine, each registering its NeuronNode, with memory caps small
// enough that placement and eviction show). `make run` and the end-to-end
// tests both use it.
package localstack

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/helexa-ai/cortex/internal/manager"
)

// NeuronSpec describes one local neuron.
type NeuronSpec struct {
	// Name is its NeuronNode name.
	Name string
	// MemoryLimit caps the memory it advertises, e.g. "256Mi".
	MemoryLimit string
	// Labels are set on its NeuronNode once it registers.
	Labels map[string]string
}

// Options configure a stack.
type Options struct {
	// Dir holds the stack's state: kubeconfig, keys, logs.
	Dir string
	// BinDir holds the manager, gateway and neuron binaries.
	BinDir string
	// Assets holds kube-apiserver and etcd.
	Assets string
	// CRDDir holds the CRD manifests.
	CRDDir string
	// CacheDir is the neurons' model cache.
	CacheDir string
	// Neurons to run; default two, neuron-a and neuron-b.
	Neurons []NeuronSpec
	// GatewayAddr is where the gateway listens (default a free port).
	GatewayAddr string
	// StaleAfter and PollInterval tune the manager; Heartbeat the neurons.
	StaleAfter, PollInterval, Heartbeat time.Duration
	// Threads per model in each neuron (default 1: several processes share
	// the CPUs).
	Threads int
	// Logs, when set, also receives every process's output, prefixed.
	Logs io.Writer
}

// Stack is a running local cortex.
type Stack struct {
	opts Options
	env  *envtest.Environment

	// Config and Client reach the API server.
	Config *rest.Config
	Client client.Client
	// Kubeconfig is a kubeconfig file for kubectl.
	Kubeconfig string
	// GatewayURL is the gateway's base URL; APIKey a key it accepts.
	GatewayURL string
	APIKey     string
	// GatewayMetrics and ManagerMetrics are the /metrics URLs.
	GatewayMetrics, ManagerMetrics string
	// NeuronToken is the neurons' bearer token.
	NeuronToken string
	// NeuronURLs maps neuron names to their base URLs.
	NeuronURLs map[string]string

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	args []string
	env  []string
	log  string
}

// Start brings the stack up; Stop takes it down.
func Start(ctx context.Context, opts Options) (s *Stack, err error) {
	if opts.Dir == "" || opts.BinDir == "" || opts.Assets == "" || opts.CRDDir == "" || opts.CacheDir == "" {
		return nil, errors.New("localstack: Dir, BinDir, Assets, CRDDir and CacheDir are required")
	}
	if len(opts.Neurons) == 0 {
		opts.Neurons = []NeuronSpec{{Name: "neuron-a", MemoryLimit: "384Mi"}, {Name: "neuron-b", MemoryLimit: "384Mi"}}
	}
	if opts.StaleAfter == 0 {
		opts.StaleAfter = 6 * time.Second
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 2 * time.Second
	}
	if opts.Threads == 0 {
		opts.Threads = 1
	}
	for _, bin := range []string{"manager", "gateway", "neuron"} {
		if _, err := os.Stat(filepath.Join(opts.BinDir, bin)); err != nil {
			return nil, fmt.Errorf("localstack: %s binary missing (make build): %w", bin, err)
		}
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.CacheDir, 0o755); err != nil {
		return nil, err
	}
	s = &Stack{opts: opts, procs: map[string]*proc{}, NeuronURLs: map[string]string{}}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	s.env = &envtest.Environment{CRDDirectoryPaths: []string{opts.CRDDir}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: opts.Assets}
	if s.Config, err = s.env.Start(); err != nil {
		return nil, fmt.Errorf("starting kube-apiserver and etcd: %w", err)
	}
	if s.Client, err = client.New(s.Config, client.Options{Scheme: manager.Scheme()}); err != nil {
		return nil, err
	}
	user, err := s.env.ControlPlane.AddUser(envtest.User{Name: "cortex-admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return nil, err
	}
	s.Kubeconfig = filepath.Join(opts.Dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, kc, 0o600); err != nil {
		return nil, err
	}
	s.NeuronToken, s.APIKey = secret("nt-"), secret("sk-local-")
	tokenFile := filepath.Join(opts.Dir, "neuron-token")
	keysFile := filepath.Join(opts.Dir, "api-keys")
	if err := os.WriteFile(tokenFile, []byte(s.NeuronToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keysFile, []byte("local:"+s.APIKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := []string{"KUBECONFIG=" + s.Kubeconfig}

	ports, err := freePorts(4 + len(opts.Neurons))
	if err != nil {
		return nil, err
	}
	mgrMetrics, mgrProbe, gwMetrics := ports[0], ports[1], ports[2]
	gwAddr := opts.GatewayAddr
	if gwAddr == "" {
		gwAddr = "127.0.0.1:" + strconv.Itoa(ports[3])
	}
	s.GatewayURL = "http://" + gwAddr
	s.GatewayMetrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", gwMetrics)
	s.ManagerMetrics = fmt.Sprintf("http://127.0.0.1:%d/metrics", mgrMetrics)

	for i, n := range opts.Neurons {
		addr := "127.0.0.1:" + strconv.Itoa(ports[4+i])
		s.NeuronURLs[n.Name] = "http://" + addr
		args := []string{
			"--addr=" + addr, "--advertise-url=http://" + addr, "--node-name=" + n.Name,
			"--token-file=" + tokenFile, "--cache-dir=" + opts.CacheDir, "--kubeconfig=" + s.Kubeconfig,
			"--heartbeat-interval=" + opts.Heartbeat.String(), "--disable-nvml=true",
			"--threads=" + strconv.Itoa(opts.Threads),
		}
		if n.MemoryLimit != "" {
			args = append(args, "--memory-limit="+n.MemoryLimit)
		}
		if err := s.spawn(n.Name, "neuron", args, env); err != nil {
			return nil, err
		}
	}
	if err := s.spawn("manager", "manager", []string{
		fmt.Sprintf("--metrics-bind-address=127.0.0.1:%d", mgrMetrics),
		fmt.Sprintf("--health-probe-bind-address=127.0.0.1:%d", mgrProbe),
		"--neuron-token-file=" + tokenFile,
		"--heartbeat-stale-after=" + opts.StaleAfter.String(),
		"--poll-interval=" + opts.PollInterval.String(),
	}, env); err != nil {
		return nil, err
	}
	if err := s.spawn("gateway", "gateway", []string{
		"--addr=" + gwAddr, fmt.Sprintf("--metrics-addr=127.0.0.1:%d", gwMetrics),
		"--api-keys-file=" + keysFile, "--neuron-token-file=" + tokenFile,
		"--keep-alive-interval=2s", "--cold-start-timeout=5m",
	}, env); err != nil {
		return nil, err
	}

	// Ready when the gateway answers and every neuron answers.
	wait := func(url string) error {
		return waitHTTP(ctx, url, 2*time.Minute, func() error { return s.exited() })
	}
	if err := wait(s.GatewayURL + "/readyz"); err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	for name, url := range s.NeuronURLs {
		if err := wait(url + "/healthz"); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s, nil
}

func secret(prefix string) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

func freePorts(n int) ([]int, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	var out []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		out = append(out, ln.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

// spawn starts a binary as a named process whose output goes to
// Dir/logs/<name>.log (and Options.Logs).
func (s *Stack) spawn(name, bin string, args, env []string) error {
	p := &proc{args: args, env: env, log: filepath.Join(s.opts.Dir, "logs", name+".log")}
	s.mu.Lock()
	s.procs[name] = p
	s.mu.Unlock()
	return s.launch(name, bin, p)
}

func (s *Stack) launch(name, bin string, p *proc) error {
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	var out io.Writer = f
	if s.opts.Logs != nil {
		out = io.MultiWriter(f, &prefixWriter{prefix: name + " | ", w: s.opts.Logs})
	}
	cmd := exec.Command(filepath.Join(s.opts.BinDir, bin), p.args...)
	cmd.Env = append(os.Environ(), p.env...)
	cmd.Stdout, cmd.Stderr = out, out
	// Own process group, so Ctrl-C in a terminal reaches the stack through
	// Stop (graceful) rather than killing children mid-write.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() {
		p.err = cmd.Wait()
		_ = f.Close()
		close(p.done)
	}()
	return nil
}

// exited reports a process that stopped on its own.
func (s *Stack) exited() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, p := range s.procs {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %w (see %s)", name, p.err, p.log)
		default:
		}
	}
	return nil
}

// Kill sends SIGKILL to a process (a neuron dying mid-request).
func (s *Stack) Kill(name string) error {
	s.mu.Lock()
	p, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no process %s", name)
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return err
	}
	<-p.done
	return nil
}

// Restart starts a killed process again with the same arguments.
func (s *Stack) Restart(name string) error {
	s.mu.Lock()
	p, ok := s.procs[name]
	s.mu.Unlock()
	if !ok {
		return fmt.Errorf("no process %s", name)
	}
	select {
	case <-p.done:
	default:
		return fmt.Errorf("%s is still running", name)
	}
	bin := name
	if _, isNeuron := s.NeuronURLs[name]; isNeuron {
		bin = "neuron"
	}
	return s.launch(name, bin, p)
}

// LogPath is where a process writes its output.
func (s *Stack) LogPath(name string) string {
	return filepath.Join(s.opts.Dir, "logs", name+".log")
}

// Stop stops every process (SIGTERM, then SIGKILL after a grace period)
// and the control plane.
func (s *Stack) Stop() error {
	s.mu.Lock()
	procs := make([]*proc, 0, len(s.procs))
	// Gateway and manager first, so nothing acts on neurons going away.
	for _, name := range append([]string{"gateway", "manager"}, keys(s.NeuronURLs)...) {
		if p, ok := s.procs[name]; ok && p.cmd != nil {
			procs = append(procs, p)
		}
	}
	s.mu.Unlock()
	for _, p := range procs {
		select {
		case <-p.done:
			continue
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
	}
	if s.env != nil {
		return s.env.Stop()
	}
	return nil
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func waitHTTP(ctx context.Context, url string, timeout time.Duration, dead func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if err := dead(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready after %s", url, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// prefixWriter prefixes each line written through it.
type prefixWriter struct {
	mu     sync.Mutex
	prefix string
	w      io.Writer
	mid    bool
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []byte
	for _, c := range b {
		if !p.mid {
			out = append(out, p.prefix...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	if _, err := p.w.Write(out); err != nil {
		return 0, err
	}
	return len(b), nil
}
