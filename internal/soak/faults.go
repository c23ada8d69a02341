package soak

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/localstack"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// fault injects itself, waits until the fleet has dealt with it, puts the
// stack back together (restarting what it killed) and returns how many
// loads of warm Models the fault made necessary.
type fault struct {
	doc    string
	inject func(f *fixture, ctx context.Context, ph *Phase) (expectedLoads int, err error)
}

// faults are the soak's faults by name.
var faults = map[string]fault{
	"neuron-kill": {"kill -9 of the neuron holding warm-one, mid-stream; restarted once its Models are routable elsewhere",
		func(f *fixture, ctx context.Context, ph *Phase) (int, error) { return f.neuronDown(ctx, ph, false) }},
	"neuron-hang": {"SIGSTOP of the neuron holding warm-one; SIGCONT once its Models are routable elsewhere",
		func(f *fixture, ctx context.Context, ph *Phase) (int, error) { return f.neuronDown(ctx, ph, true) }},
	"neuron-empty": {"the neuron holding warm-one killed and started at once: back before it is stale, its models gone",
		(*fixture).neuronEmpty},
	"gateway-roll": {"rolling restart of one gateway replica while slow streams run through it: out of the balancer, SIGTERM, drained, replaced",
		(*fixture).gatewayRoll},
	"manager-failover": {"kill -9 of the leader manager; the standby takes the lease; the old one restarts as standby",
		(*fixture).managerFailover},
	"apiserver-restart": {"the API server and etcd stopped for 5 s and started again on the same data",
		(*fixture).apiServerRestart},
	"token-rotate": {"the neuron token rotated twice under traffic (the file every process reads replaced; the next rotation once every neuron accepts the new token); the neurons keep the previous token for a short grace, which then runs out",
		(*fixture).tokenRotate},
	"overlap": {"neuron-kill, manager-failover and gateway-roll at the same moment",
		(*fixture).overlap},
}

// FaultNames lists the faults in the order the full soak runs them.
func FaultNames() []string {
	return []string{"neuron-kill", "neuron-hang", "neuron-empty", "gateway-roll", "manager-failover", "apiserver-restart", "token-rotate", "overlap"}
}

// FaultDoc describes a fault.
func FaultDoc(name string) string { return faults[name].doc }

// fixture is the running stack with what the faults need.
type fixture struct {
	cfg Config
	st  *localstack.Stack
	c   *client
	rec *recorder

	mu sync.Mutex
	// supervised counts managers restarted after exiting by themselves.
	supervised int
	// killed marks managers a fault killed and will restart itself.
	killed map[string]bool
	// restarted marks processes replaced during the soak (their footprint
	// at the end is a new process's).
	restarted map[string]bool
}

func (f *fixture) markRestarted(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.restarted == nil {
		f.restarted = map[string]bool{}
	}
	f.restarted[name] = true
}

// supervise restarts a manager that exits by itself, as the kubelet
// restarts a Deployment's pod: a leader that cannot renew its lease (the
// API server is away) exits by design.
func (f *fixture) supervise(ctx context.Context) {
	for ctx.Err() == nil {
		for _, name := range f.st.Managers {
			f.mu.Lock()
			skip := f.killed[name]
			f.mu.Unlock()
			if !skip && f.ensureRunning(name) {
				f.mu.Lock()
				f.supervised++
				f.mu.Unlock()
				f.markRestarted(name)
				f.cfg.Logf("%s exited by itself; restarted", name)
			}
		}
		sleep(ctx, time.Second)
	}
}

// killManager kills a manager that the fault, not the supervisor, brings
// back.
func (f *fixture) killManager(name string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.killed == nil {
		f.killed = map[string]bool{}
	}
	f.killed[name] = true
	return f.st.Kill(name)
}

// ensureRunning starts a stopped process again and reports whether it had
// to.
func (f *fixture) ensureRunning(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.killed, name)
	if f.st.Running(name) {
		return false
	}
	return f.st.Restart(name) == nil
}

func (f *fixture) model(ctx context.Context, name string) (*cortexv1.Model, error) {
	var m cortexv1.Model
	err := f.st.Client.Get(ctx, keyOf(name), &m)
	return &m, err
}

// holder is the node of warm-one's ready replica.
func (f *fixture) holder(ctx context.Context) (string, error) {
	m, err := f.model(ctx, warmOne)
	if err != nil {
		return "", err
	}
	for _, r := range m.Status.Replicas {
		if r.State == cortexv1.ReplicaReady {
			return r.Node, nil
		}
	}
	return "", fmt.Errorf("%s has no ready replica: %s", warmOne, m.Status.Ready)
}

// warmOn lists the warm Models with a ready replica on node.
func (f *fixture) warmOn(ctx context.Context, node string) ([]string, error) {
	var out []string
	for _, name := range []string{warmOne, warmTwo} {
		m, err := f.model(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, r := range m.Status.Replicas {
			if r.Node == node && r.State == cortexv1.ReplicaReady {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// waitRoutable waits until each Model has a ready replica the fault did
// not touch: on another node, or loaded on the victim after the fault.
func (f *fixture) waitRoutable(ctx context.Context, names []string, victim string, since time.Time, timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	for {
		ok := true
		var seen []string
		for _, name := range names {
			m, err := f.model(ctx, name)
			if err != nil {
				ok = false
				break
			}
			for _, r := range m.Status.Replicas {
				seen = append(seen, fmt.Sprintf("%s@%s %s loaded %v", name, r.Node, r.State, r.LoadedAt))
			}
			found := false
			for _, r := range m.Status.Replicas {
				if r.State != cortexv1.ReplicaReady {
					continue
				}
				// Status times are whole seconds: a replica loaded in the
				// second of the fault counts (the one it replaced was
				// loaded long before).
				if r.Node != victim || (r.LoadedAt != nil && !r.LoadedAt.Time.Before(since.Truncate(time.Second))) {
					found = true
				}
			}
			ok = ok && found
		}
		if ok {
			return time.Since(since), nil
		}
		if time.Now().After(deadline) {
			return time.Since(since), fmt.Errorf("%v not routable %s after the fault (replicas: %v)", names, timeout, seen)
		}
		sleep(ctx, 100*time.Millisecond)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
}

func (f *fixture) neuronDown(ctx context.Context, ph *Phase, hang bool) (int, error) {
	victim, err := f.holder(ctx)
	if err != nil {
		return 0, err
	}
	affected, err := f.warmOn(ctx, victim)
	if err != nil {
		return 0, err
	}
	ph.Start = time.Now()
	if hang {
		err = f.st.Signal(victim, syscall.SIGSTOP)
	} else {
		err = f.st.Kill(victim)
	}
	if err != nil {
		return 0, err
	}
	took, err := f.waitRoutable(ctx, affected, victim, ph.Start, 2*time.Minute)
	ph.Routable = took
	ph.Note = fmt.Sprintf("%s held %v", victim, affected)
	if err != nil {
		return 0, err
	}
	if hang {
		err = f.st.Signal(victim, syscall.SIGCONT)
	} else {
		f.markRestarted(victim)
		err = f.st.Restart(victim)
	}
	return len(affected), err
}

func (f *fixture) neuronEmpty(ctx context.Context, ph *Phase) (int, error) {
	victim, err := f.holder(ctx)
	if err != nil {
		return 0, err
	}
	affected, err := f.warmOn(ctx, victim)
	if err != nil {
		return 0, err
	}
	ph.Start = time.Now()
	if err := f.st.Kill(victim); err != nil {
		return 0, err
	}
	f.markRestarted(victim)
	if err := f.st.Restart(victim); err != nil {
		return 0, err
	}
	took, err := f.waitRoutable(ctx, affected, victim, ph.Start, 2*time.Minute)
	ph.Routable = took
	ph.Note = fmt.Sprintf("%s restarted empty; it held %v", victim, affected)
	return len(affected), err
}

// longStreams starts n slow-reading streams (several seconds each), so a
// replica taken out of rotation has streams to drain.
func (f *fixture) longStreams(ctx context.Context, n int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(1000+i), 7))
			f.rec.add(f.c.do(ctx, KindSlowReader, []string{warmOne, warmTwo}[i%2], rng))
		}()
	}
	sleep(ctx, 300*time.Millisecond)
	return &wg
}

func (f *fixture) gatewayRoll(ctx context.Context, ph *Phase) (int, error) {
	name := f.st.Gateways[len(f.st.Gateways)-1]
	f.markRestarted(name)
	streams := f.longStreams(ctx, 6)
	defer streams.Wait()
	// No pause before SIGTERM: the streams are still running when it comes.
	drain, err := f.st.RollGateway(ctx, name, 0, 150*time.Second)
	ph.Note = fmt.Sprintf("%s exited %.1f s after SIGTERM", name, drain.Seconds())
	return 0, err
}

func (f *fixture) managerFailover(ctx context.Context, ph *Phase) (int, error) {
	leader := f.st.Leader(ctx)
	if leader == "" {
		return 0, errors.New("no manager holds the lease")
	}
	ph.Start = time.Now()
	if err := f.killManager(leader); err != nil {
		return 0, err
	}
	f.markRestarted(leader)
	took, next, err := f.waitLeader(ctx, leader, 2*time.Minute)
	ph.Note = fmt.Sprintf("%s killed; %s leads after %.1f s", leader, next, took.Seconds())
	if err != nil {
		return 0, err
	}
	f.ensureRunning(leader)
	return 0, nil
}

func (f *fixture) waitLeader(ctx context.Context, old string, timeout time.Duration) (time.Duration, string, error) {
	start := time.Now()
	for time.Since(start) < timeout && ctx.Err() == nil {
		if l := f.st.Leader(ctx); l != "" && l != old {
			return time.Since(start), l, nil
		}
		sleep(ctx, 100*time.Millisecond)
	}
	return time.Since(start), "", fmt.Errorf("no manager took the lease within %s", timeout)
}

func (f *fixture) apiServerRestart(ctx context.Context, ph *Phase) (int, error) {
	ph.Start = time.Now()
	if err := f.st.RestartControlPlane(ctx, 5*time.Second); err != nil {
		return 0, err
	}
	back := time.Since(ph.Start)
	if err := f.waitConverged(ctx, 3*time.Minute); err != nil {
		return 0, err
	}
	f.mu.Lock()
	restarts := f.supervised
	f.mu.Unlock()
	ph.Note = fmt.Sprintf("managers that exited on losing the lease, restarted (total so far): %d. API server and etcd took %.1f s to stop, were down 5 s, the API answered again %.1f s after the stop began; fleet converged %.1f s after it", restarts,
		f.st.ControlPlaneStop.Seconds(), back.Seconds(), time.Since(ph.Start).Seconds())
	return 0, nil
}

func (f *fixture) overlap(ctx context.Context, ph *Phase) (int, error) {
	victim, err := f.holder(ctx)
	if err != nil {
		return 0, err
	}
	affected, err := f.warmOn(ctx, victim)
	if err != nil {
		return 0, err
	}
	leader := f.st.Leader(ctx)
	if leader == "" {
		return 0, errors.New("no manager holds the lease")
	}
	// The same replica as gateway-roll, so the other one lives through the
	// whole soak and its footprint can be compared.
	gw := f.st.Gateways[len(f.st.Gateways)-1]
	ph.Start = time.Now()
	streams := f.longStreams(ctx, 6)
	defer streams.Wait()
	var wg sync.WaitGroup
	var rollErr error
	var drain time.Duration
	wg.Add(1)
	go func() {
		defer wg.Done()
		f.markRestarted(gw)
		drain, rollErr = f.st.RollGateway(ctx, gw, 0, 150*time.Second)
	}()
	if err := f.killManager(leader); err != nil {
		return 0, err
	}
	f.markRestarted(leader)
	if err := f.st.Kill(victim); err != nil {
		return 0, err
	}
	f.markRestarted(victim)
	took, err := f.waitRoutable(ctx, affected, victim, ph.Start, 2*time.Minute)
	ph.Routable = took
	wg.Wait()
	ph.Note = fmt.Sprintf("%s (held %v) and %s killed; %s exited %.1f s after SIGTERM", victim, affected, leader, gw, drain.Seconds())
	if err != nil {
		return 0, err
	}
	if rollErr != nil {
		return 0, rollErr
	}
	if err := f.st.Restart(victim); err != nil {
		return 0, err
	}
	f.ensureRunning(leader)
	return len(affected), nil
}

// TokenGrace is how long the soak's neurons keep accepting the token a
// rotation replaced: short, so that the soak also runs past it and any
// process still sending the old token would fail.
const TokenGrace = 15 * time.Second

func (f *fixture) tokenRotate(ctx context.Context, ph *Phase) (int, error) {
	ph.Start = time.Now()
	first := f.st.NeuronToken
	var notes []string
	for i := 1; i <= 2; i++ {
		tok, err := f.st.RotateNeuronToken()
		if err != nil {
			return 0, err
		}
		at := time.Now()
		if err := f.waitAccepted(ctx, tok, time.Minute); err != nil {
			return 0, fmt.Errorf("rotation %d: %w", i, err)
		}
		notes = append(notes, fmt.Sprintf("every neuron accepted token %d %.1f s after it was written", i, time.Since(at).Seconds()))
	}
	// Past the grace only the newest token is good: a gateway or manager
	// that had not read it would fail from here on.
	past := TokenGrace + 2*time.Second
	sleep(ctx, past)
	for name, url := range f.st.NeuronURLs {
		if _, err := neuronapi.NewClient(first).Models(ctx, url); err == nil {
			return 0, fmt.Errorf("%s still accepts the token from before the rotations", name)
		}
	}
	if err := f.waitConverged(ctx, time.Minute); err != nil {
		return 0, err
	}
	ph.Note = strings.Join(notes, "; ") + fmt.Sprintf("; the first token refused everywhere and traffic kept on for %s past the grace", past)
	return 0, nil
}

// waitAccepted waits until every neuron accepts tok.
func (f *fixture) waitAccepted(ctx context.Context, tok string, timeout time.Duration) error {
	c := neuronapi.NewClient(tok)
	c.Timeout, c.Attempts = time.Second, 1
	deadline := time.Now().Add(timeout)
	for name, url := range f.st.NeuronURLs {
		for {
			if _, err := c.Models(ctx, url); err == nil {
				break
			} else if time.Now().After(deadline) || ctx.Err() != nil {
				return fmt.Errorf("%s did not accept the new token within %s: %w", name, timeout, err)
			}
			sleep(ctx, 200*time.Millisecond)
		}
	}
	return nil
}

// waitConverged waits until every process runs, a manager leads, every
// NeuronNode is Ready and every warm Model has all its replicas Ready.
func (f *fixture) waitConverged(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for {
		last = f.converged(ctx)
		if last == "" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not converged after %s: %s", timeout, last)
		}
		sleep(ctx, 200*time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
	}
}

func (f *fixture) converged(ctx context.Context) string {
	for _, name := range slices.Concat(f.st.Gateways, f.st.Managers, keys(f.st.NeuronURLs)) {
		if !f.st.Running(name) {
			return name + " is not running"
		}
	}
	if len(f.st.Managers) > 1 && f.st.Leader(ctx) == "" {
		return "no manager leads"
	}
	var nodes cortexv1.NeuronNodeList
	if err := f.st.Client.List(ctx, &nodes); err != nil {
		return err.Error()
	}
	for _, n := range nodes.Items {
		if !meta.IsStatusConditionTrue(n.Status.Conditions, cortexv1.NeuronNodeConditionReady) {
			return n.Name + " is not Ready"
		}
	}
	for _, name := range []string{warmOne, warmTwo} {
		m, err := f.model(ctx, name)
		if err != nil {
			return err.Error()
		}
		if m.Status.DesiredReplicas == 0 || m.Status.ReadyReplicas != m.Status.DesiredReplicas {
			return fmt.Sprintf("%s is %s", name, m.Status.Ready)
		}
	}
	return ""
}

// footprint samples the gateways and neurons with no request in flight
// and no idle client connection.
func (f *fixture) footprint(ctx context.Context, gen *generator, c *client) map[string]Resources {
	resume := gen.pause()
	defer resume()
	c.closeIdle()
	sleep(ctx, 2*time.Second)
	out := map[string]Resources{}
	for _, name := range slices.Concat(f.st.Gateways, keys(f.st.NeuronURLs)) {
		out[name] = resources(ctx, f.st.MetricsURLs[name])
	}
	return out
}

func keys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
