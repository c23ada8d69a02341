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
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/helexa-ai/cortex/internal/manager"
	"github.com/helexa-ai/cortex/internal/neuronapi"
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
	// Gateways is how many gateway replicas run (default 1). With more
	// than one, GatewayURL is a loopback TCP balancer in front of them
	// that gives each new connection to a replica in rotation, as a
	// Service does with a Deployment's ready endpoints.
	Gateways int
	// Managers is how many managers run (default 1). With more than one,
	// all run with leader election and one holds the lease.
	Managers int
	// GatewayArgs and ManagerArgs are extra flags for every replica;
	// NeuronArgs for every neuron.
	GatewayArgs, ManagerArgs, NeuronArgs []string
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
	// GatewayMetrics and ManagerMetrics are the /metrics URLs of the first
	// gateway and manager.
	GatewayMetrics, ManagerMetrics string
	// Gateways and Managers name the replicas ("gateway", "gateway-2", …),
	// in start order.
	Gateways, Managers []string
	// MetricsURLs maps every process (gateways, managers, neurons) to its
	// /metrics URL.
	MetricsURLs map[string]string
	// NeuronToken is the neurons' bearer token as the stack started;
	// TokenFile holds the current one (RotateNeuronToken).
	NeuronToken, TokenFile string
	// NeuronURLs maps neuron names to their base URLs.
	NeuronURLs map[string]string

	// ControlPlaneStop is how long the last RestartControlPlane took to
	// stop the API server and etcd.
	ControlPlaneStop time.Duration

	// gatewayAddrs maps each gateway replica to its own address.
	gatewayAddrs map[string]string
	lb           *balancer

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
	if opts.Gateways == 0 {
		opts.Gateways = 1
	}
	if opts.Managers == 0 {
		opts.Managers = 1
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
	s = &Stack{opts: opts, procs: map[string]*proc{}, NeuronURLs: map[string]string{},
		MetricsURLs: map[string]string{}, gatewayAddrs: map[string]string{}}
	defer func() {
		if err != nil {
			_ = s.Stop()
		}
	}()

	s.env = &envtest.Environment{CRDDirectoryPaths: []string{opts.CRDDir}, ErrorIfCRDPathMissing: true, BinaryAssetsDirectory: opts.Assets}
	// Fixed directories (rather than envtest's temporary ones, removed on
	// stop) let RestartControlPlane bring etcd back on its data and the API
	// server back with the certificates every kubeconfig trusts.
	s.env.ControlPlane.Etcd = &envtest.Etcd{DataDir: filepath.Join(opts.Dir, "etcd")}
	s.env.ControlPlane.GetAPIServer().CertDir = filepath.Join(opts.Dir, "apiserver")
	// Its graceful shutdown outlasts envtest's default 20 s while clients
	// hold watches, on a busy machine.
	s.env.ControlPlaneStopTimeout = 90 * time.Second
	for _, d := range []string{s.env.ControlPlane.Etcd.DataDir, s.env.ControlPlane.APIServer.CertDir} {
		if err := os.RemoveAll(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
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
	s.TokenFile = tokenFile
	keysFile := filepath.Join(opts.Dir, "api-keys")
	if err := os.WriteFile(tokenFile, []byte(s.NeuronToken+"\n"), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(keysFile, []byte("local:"+s.APIKey+"\n"), 0o600); err != nil {
		return nil, err
	}
	env := []string{"KUBECONFIG=" + s.Kubeconfig}

	ports, err := freePorts(len(opts.Neurons) + 2*opts.Managers + 3*opts.Gateways)
	if err != nil {
		return nil, err
	}
	port := func() string {
		p := ports[0]
		ports = ports[1:]
		return "127.0.0.1:" + strconv.Itoa(p)
	}

	for _, n := range opts.Neurons {
		addr := port()
		s.NeuronURLs[n.Name] = "http://" + addr
		s.MetricsURLs[n.Name] = "http://" + addr + neuronapi.PathMetrics
		args := []string{
			"--addr=" + addr, "--advertise-url=http://" + addr, "--node-name=" + n.Name,
			"--token-file=" + tokenFile, "--cache-dir=" + opts.CacheDir, "--kubeconfig=" + s.Kubeconfig,
			"--heartbeat-interval=" + opts.Heartbeat.String(), "--disable-nvml=true",
			"--threads=" + strconv.Itoa(opts.Threads),
		}
		if n.MemoryLimit != "" {
			args = append(args, "--memory-limit="+n.MemoryLimit)
		}
		if err := s.spawn(n.Name, "neuron", append(args, opts.NeuronArgs...), env); err != nil {
			return nil, err
		}
	}
	for i := range opts.Managers {
		name := replicaName("manager", i)
		metricsAddr, probeAddr := port(), port()
		args := []string{
			"--metrics-bind-address=" + metricsAddr, "--health-probe-bind-address=" + probeAddr,
			"--neuron-token-file=" + tokenFile,
			"--heartbeat-stale-after=" + opts.StaleAfter.String(),
			"--poll-interval=" + opts.PollInterval.String(),
		}
		if opts.Managers > 1 {
			args = append(args, "--leader-elect=true", "--leader-election-namespace=default")
		}
		if err := s.spawn(name, "manager", append(args, opts.ManagerArgs...), env); err != nil {
			return nil, err
		}
		s.Managers = append(s.Managers, name)
		s.MetricsURLs[name] = "http://" + metricsAddr + "/metrics"
	}
	s.ManagerMetrics = s.MetricsURLs[s.Managers[0]]
	// Several gateway replicas share the prompt prefixes they route, each
	// listing all of them (itself included, as the chart's headless
	// Service does).
	peerAddrs := make([]string, opts.Gateways)
	for i := range peerAddrs {
		peerAddrs[i] = port()
	}
	for i := range opts.Gateways {
		name := replicaName("gateway", i)
		addr, metricsAddr := port(), port()
		if opts.Gateways == 1 && opts.GatewayAddr != "" {
			addr = opts.GatewayAddr
		}
		args := []string{
			"--addr=" + addr, "--metrics-addr=" + metricsAddr,
			"--api-keys-file=" + keysFile, "--neuron-token-file=" + tokenFile,
			"--keep-alive-interval=2s", "--cold-start-timeout=5m",
		}
		if opts.Gateways > 1 {
			args = append(args, "--peer-addr="+peerAddrs[i], "--peers="+strings.Join(peerAddrs, ","))
		}
		if err := s.spawn(name, "gateway", append(args, opts.GatewayArgs...), env); err != nil {
			return nil, err
		}
		s.Gateways = append(s.Gateways, name)
		s.gatewayAddrs[name] = addr
		s.MetricsURLs[name] = "http://" + metricsAddr + "/metrics"
	}
	s.GatewayMetrics = s.MetricsURLs[s.Gateways[0]]
	if opts.Gateways == 1 {
		s.GatewayURL = "http://" + s.gatewayAddrs[s.Gateways[0]]
	} else {
		lbAddr := opts.GatewayAddr
		if lbAddr == "" {
			lbAddr = "127.0.0.1:0"
		}
		if s.lb, err = newBalancer(lbAddr); err != nil {
			return nil, err
		}
		s.GatewayURL = "http://" + s.lb.addr()
	}

	// Ready when the gateway answers and every neuron answers.
	wait := func(url string) error {
		return waitHTTP(ctx, url, 2*time.Minute, func() error { return s.exited() })
	}
	for _, name := range s.Gateways {
		if err := wait("http://" + s.gatewayAddrs[name] + "/readyz"); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if s.lb != nil {
			s.lb.set(name, s.gatewayAddrs[name], true)
		}
	}
	for name, url := range s.NeuronURLs {
		if err := wait(url + "/healthz"); err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return s, nil
}

// replicaName names the i-th replica of a binary: "gateway", "gateway-2", …
func replicaName(bin string, i int) string {
	if i == 0 {
		return bin
	}
	return bin + "-" + strconv.Itoa(i+1)
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
	return s.launch(name, s.binary(name), p)
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
	// Gateways and managers first, so nothing acts on neurons going away.
	for _, name := range slices.Concat(s.Gateways, s.Managers, keys(s.NeuronURLs)) {
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
	if s.lb != nil {
		s.lb.close()
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
