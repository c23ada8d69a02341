package localstack

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"
)

// binary is the program a named process runs.
func (s *Stack) binary(name string) string {
	if _, isNeuron := s.NeuronURLs[name]; isNeuron {
		return "neuron"
	}
	for _, bin := range []string{"gateway", "manager"} {
		if name == bin || strings.HasPrefix(name, bin+"-") {
			return bin
		}
	}
	return name
}

func (s *Stack) proc(name string) (*proc, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.procs[name]
	if !ok {
		return nil, fmt.Errorf("no process %s", name)
	}
	return p, nil
}

// Signal sends a signal to a running process: SIGSTOP hangs it (a neuron
// that stops answering without dying), SIGCONT resumes it.
func (s *Stack) Signal(name string, sig syscall.Signal) error {
	p, err := s.proc(name)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return fmt.Errorf("%s is not running", name)
	default:
	}
	return p.cmd.Process.Signal(sig)
}

// Running reports whether a process is up.
func (s *Stack) Running(name string) bool {
	p, err := s.proc(name)
	if err != nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// PID is a running process's id (0 when it is not running).
func (s *Stack) PID(name string) int {
	p, err := s.proc(name)
	if err != nil || !s.Running(name) {
		return 0
	}
	return p.cmd.Process.Pid
}

// Terminate sends SIGTERM and waits up to grace for the process to exit,
// then kills it. It reports whether it exited by itself.
func (s *Stack) Terminate(name string, grace time.Duration) (bool, error) {
	p, err := s.proc(name)
	if err != nil {
		return false, err
	}
	if err := s.Signal(name, syscall.SIGTERM); err != nil {
		return false, err
	}
	select {
	case <-p.done:
		return true, nil
	case <-time.After(grace):
		_ = p.cmd.Process.Kill()
		<-p.done
		return false, nil
	}
}

// RollGateway replaces one gateway replica the way a Deployment's rolling
// update does: the replica leaves the balancer's rotation (its endpoint is
// removed), preStop later it gets SIGTERM and drains, and once it has
// exited a new process takes its place and rejoins the rotation when
// ready. It reports how long the old process took to exit after SIGTERM.
func (s *Stack) RollGateway(ctx context.Context, name string, preStop, grace time.Duration) (time.Duration, error) {
	addr, ok := s.gatewayAddrs[name]
	if !ok {
		return 0, fmt.Errorf("no gateway %s", name)
	}
	if s.lb != nil {
		s.lb.set(name, addr, false)
	}
	select {
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(preStop):
	}
	start := time.Now()
	clean, err := s.Terminate(name, grace)
	drain := time.Since(start)
	if err != nil {
		return drain, err
	}
	if !clean {
		return drain, fmt.Errorf("%s did not exit within %s of SIGTERM; killed", name, grace)
	}
	if err := s.Restart(name); err != nil {
		return drain, err
	}
	alive := func() error {
		if !s.Running(name) {
			return fmt.Errorf("%s exited (see %s)", name, s.LogPath(name))
		}
		return nil
	}
	if err := waitHTTP(ctx, "http://"+addr+"/readyz", 2*time.Minute, alive); err != nil {
		return drain, fmt.Errorf("%s: %w", name, err)
	}
	if s.lb != nil {
		s.lb.set(name, addr, true)
	}
	return drain, nil
}

// RestartControlPlane stops the API server and etcd, waits down, and
// starts both again on the same ports, data and certificates: the
// processes keep their kubeconfigs and only see the API go away and come
// back.
func (s *Stack) RestartControlPlane(ctx context.Context, down time.Duration) error {
	cp := &s.env.ControlPlane
	start := time.Now()
	if err := cp.APIServer.Stop(); err != nil {
		return fmt.Errorf("stopping the API server: %w", err)
	}
	if err := cp.Etcd.Stop(); err != nil {
		return fmt.Errorf("stopping etcd: %w", err)
	}
	s.ControlPlaneStop = time.Since(start)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(down):
	}
	if err := cp.Etcd.Start(); err != nil {
		return fmt.Errorf("starting etcd again: %w", err)
	}
	if err := cp.APIServer.Start(); err != nil {
		return fmt.Errorf("starting the API server again: %w", err)
	}
	return nil
}

// Leader names the manager holding the leader-election lease, from the
// managers' own leader_election_master_status gauge ("" when none does).
func (s *Stack) Leader(ctx context.Context) string {
	for _, name := range s.Managers {
		if !s.Running(name) {
			continue
		}
		if v, ok := scrape(ctx, s.MetricsURLs[name], "leader_election_master_status"); ok && v == 1 {
			return name
		}
	}
	return ""
}

// scrape reads the first sample of a series (name, optionally with
// labels) from a /metrics page.
func scrape(ctx context.Context, url, series string) (float64, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, false
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, false
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, series) {
			continue
		}
		rest := line[len(series):]
		if strings.HasPrefix(rest, "{") {
			if i := strings.Index(rest, "} "); i >= 0 {
				rest = rest[i+1:]
			}
		}
		if !strings.HasPrefix(rest, " ") {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(strings.TrimSpace(rest), &v); err == nil {
			return v, true
		}
	}
	return 0, false
}

// RotateNeuronToken writes a new neuron token into the file every neuron,
// manager and gateway reads, as a Secret update does: a new file renamed
// over the old, so no reader sees half a token. Each process notices on its
// own schedule (its token recheck interval). It returns the new token.
func (s *Stack) RotateNeuronToken() (string, error) {
	tok := secret("nt-")
	tmp := s.TokenFile + ".new"
	if err := os.WriteFile(tmp, []byte(tok+"\n"), 0o600); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, s.TokenFile); err != nil {
		return "", err
	}
	return tok, nil
}
