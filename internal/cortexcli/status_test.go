package cortexcli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/cortexcli"
	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/gateway"
	"github.com/helexa-ai/cortex/internal/testenv"
)

var env *testenv.Env

func TestMain(m *testing.M) {
	var err error
	if env, err = testenv.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = env.Stop()
	os.Exit(code)
}

const gi = 1 << 30

// run runs the command line in-process.
func run(ctx context.Context, environ map[string]string, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = cortexcli.Main(ctx, append([]string{"cortex"}, args...), cortexcli.IO{Out: &out, Err: &errb, Getenv: func(k string) string { return environ[k] }})
	return code, out.String(), errb.String()
}

// fleetFixture writes a small fleet into namespace ns, with the statuses
// the neurons and the manager would write (no manager runs): node a Ready
// with a GPU, node b not Ready; Model "chat" served on a; Model "stuck"
// allowed only on b, so nothing can serve it.
func fleetFixture(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	must(t, env.Client.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}))
	putNode(t, ctx, ns+"-a", true, cortexv1.GPU{Index: 0, Kind: cortexv1.DeviceCUDA, MemoryFreeBytes: 10 * gi, MemoryTotalBytes: 24 * gi})
	putNode(t, ctx, ns+"-b", false, cortexv1.GPU{Index: 0, Kind: cortexv1.DeviceCUDA, MemoryFreeBytes: 24 * gi, MemoryTotalBytes: 24 * gi})
	putModel(t, ctx, ns, "chat", nil, cortexv1.ModelPhaseReady, cortexv1.Replica{Node: ns + "-a", State: cortexv1.ReplicaReady, VRAMBytes: 4 * gi})
	putModel(t, ctx, ns, "stuck", []string{ns + "-b"}, cortexv1.ModelPhaseReady, cortexv1.Replica{Node: ns + "-b", State: cortexv1.ReplicaReady, VRAMBytes: 2 * gi})
}

func TestStatusFromTheCluster(t *testing.T) {
	ctx := log.IntoContext(t.Context(), logr.Discard())
	fleetFixture(t, ctx, "cl")
	kc := []string{"--kubeconfig", env.Kubeconfig}

	code, out, errOut := run(ctx, nil, append([]string{"status", "-n", "cl"}, kc...)...)
	if code != cortexcli.ExitDegraded {
		t.Fatalf("exit %d, want %d (degraded)\nstdout:\n%s\nstderr:\n%s", code, cortexcli.ExitDegraded, out, errOut)
	}
	for _, want := range []string{
		"FLEET DEGRADED   NODES 1/2 healthy   MODELS 1/2 serving   namespace cl",
		"cl-a  Ready     1     10.0Gi/24.0Gi      -",
		"cl-b  NotReady  1     24.0Gi/24.0Gi      -",
		"chat   Ready  1/1    cl-a",
		"stuck  Ready  0/1    cl-b(node down)",
		"node cl-b  not Ready (HeartbeatStale)",
		"stuck      NoEligibleNode: no Ready, uncordoned NeuronNode matches nodeNames",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}

	// -o json is the report itself; -A names Models by key.
	code, out, _ = run(ctx, nil, append([]string{"status", "-A", "-o", "json"}, kc...)...)
	var r fleet.Report
	must(t, json.Unmarshal([]byte(out), &r))
	if code != cortexcli.ExitDegraded || r.Status != fleet.StatusDegraded || !hasModel(r, "cl/chat") || !hasModel(r, "cl/stuck") {
		t.Fatalf("exit %d, report %+v", code, r)
	}

	// Another namespace, with nothing in it that cannot serve: impaired
	// (b is still down), exit 0.
	code, out, errOut = run(ctx, nil, append([]string{"status", "--namespace=default", "-o", "yaml"}, kc...)...)
	if code != cortexcli.ExitOK || !strings.Contains(out, "status: impaired") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
}

// The binary works as a kubectl plugin: kubectl finds kubectl-cortex on
// PATH and runs it with the user's KUBECONFIG.
func TestStatusAsAKubectlPlugin(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	ctx := log.IntoContext(t.Context(), logr.Discard())
	fleetFixture(t, ctx, "plug")
	kubectl, err := env.Kubectl()
	must(t, err)
	dir := t.TempDir()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(dir, "kubectl-cortex"), "./cmd/cortex")
	build.Dir = testenv.RepoRoot()
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building: %v\n%s", err, out)
	}
	cmd := exec.CommandContext(ctx, kubectl, "cortex", "status", "-n", "plug")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != cortexcli.ExitDegraded {
		t.Fatalf("kubectl cortex status: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "FLEET DEGRADED") || !strings.Contains(stdout.String(), "plug-a") {
		t.Fatalf("stdout:\n%s", stdout.String())
	}

	cmd = exec.CommandContext(ctx, kubectl, "cortex", "status", "--bogus")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+env.Kubeconfig, "PATH="+dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != cortexcli.ExitError || !strings.Contains(string(out), "flag provided but not defined: -bogus") || !strings.Contains(string(out), "kubectl cortex status") {
		t.Fatalf("bad flag: %v\n%s", err, out)
	}
}

// --endpoint reads the real gateway's /health, and says the same as the
// cluster does.
func TestStatusFromAGateway(t *testing.T) {
	ctx, cancel := context.WithCancel(log.IntoContext(t.Context(), logr.Discard()))
	defer cancel()
	fleetFixture(t, ctx, "gw")
	keys := filepath.Join(t.TempDir(), "keys")
	must(t, os.WriteFile(keys, []byte("sk-status\n"), 0o600))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	cfg := gateway.DefaultConfig()
	cfg.APIKeysFile, cfg.Namespace, cfg.MetricsAddr = keys, "gw", "0"
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- gateway.Run(ctx, cfg, env.Config, gateway.Options{Listener: ln, Ready: func(string) { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("gateway stopped: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("gateway stopped with error: %v", err)
		}
	})
	base := "http://" + ln.Addr().String()
	withKey := map[string]string{"CORTEX_API_KEY": "sk-status"}

	// The cluster's view of namespace gw, with the gateway's rules.
	_, clusterJSON, _ := run(ctx, nil, "status", "-n", "gw", "-o", "json", "--kubeconfig", env.Kubeconfig)
	var want fleet.Report
	must(t, json.Unmarshal([]byte(clusterJSON), &want))

	// The gateway's cache follows the API server a little behind.
	var got fleet.Report
	var code int
	var out, errOut string
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out, errOut = run(ctx, withKey, "status", "--endpoint", base+"/v1", "-o", "json")
		got = fleet.Report{}
		_ = json.Unmarshal([]byte(out), &got)
		if sameReport(got, want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code != cortexcli.ExitDegraded || !sameReport(got, want) {
		t.Fatalf("exit %d; gateway says\n%s\ncluster says\n%s\nstderr: %s", code, out, clusterJSON, errOut)
	}
	code, out, _ = run(ctx, withKey, "status", "--endpoint", base)
	if code != cortexcli.ExitDegraded || !strings.Contains(out, "gateway "+base) || !strings.Contains(out, "gw-a  Ready") {
		t.Fatalf("table, exit %d:\n%s", code, out)
	}

	// A wrong key, a gateway that is not there, and a URL that is not one.
	for _, tc := range []struct {
		name    string
		environ map[string]string
		args    []string
		want    string
	}{
		{"wrong key", nil, []string{"--endpoint", base, "--api-key", "sk-wrong"}, "the gateway refused the API key (401"},
		{"nothing listening", nil, []string{"--endpoint", "http://127.0.0.1:1"}, "connection refused"},
		{"not a URL", nil, []string{"--endpoint", "gateway:8080"}, `--endpoint "gateway:8080" is not an http:// or https:// URL`},
		{"cluster flag with endpoint", withKey, []string{"--endpoint", base, "-A"}, "-A reads the cluster; with --endpoint"},
		{"cluster flag with the endpoint's variable", map[string]string{"CORTEX_ENDPOINT": base}, []string{"-n", "gw"}, "-n reads the cluster; with $CORTEX_ENDPOINT (unset it"},
	} {
		code, out, errOut := run(ctx, tc.environ, append([]string{"status"}, tc.args...)...)
		if code != cortexcli.ExitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.name, code, out, errOut, tc.want)
		}
	}

	// --watch redraws until interrupted, and an interrupt is a clean exit.
	wctx, stop := context.WithCancel(ctx)
	w := &frameWriter{frames: make(chan struct{}, 16)}
	wdone := make(chan int, 1)
	go func() {
		wdone <- cortexcli.Main(wctx, []string{"cortex", "status", "--endpoint", base, "-w", "--interval", "1s"},
			cortexcli.IO{Out: w, Err: w, Getenv: func(k string) string { return withKey[k] }})
	}()
	<-w.frames
	<-w.frames
	stop()
	if code := <-wdone; code != cortexcli.ExitOK {
		t.Fatalf("watch exited %d after an interrupt:\n%s", code, w.String())
	}
	if n := strings.Count(w.String(), "FLEET DEGRADED"); n < 2 {
		t.Fatalf("%d frames:\n%s", n, w.String())
	}
}

func TestStatusErrors(t *testing.T) {
	ctx := t.Context()
	badKubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, os.WriteFile(badKubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "Usage:"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"status", "extra"}, `unexpected argument "extra"`},
		{[]string{"status", "--bogus"}, "flag provided but not defined: -bogus"},
		{[]string{"status", "-o", "xml"}, `--output "xml": want table, json or yaml`},
		{[]string{"status", "-w", "--interval", "10ms"}, "--interval 10ms: must be between 1s and 10m0s"},
		{[]string{"status", "-n", "x", "-A"}, "--namespace and --all-namespaces exclude each other"},
		{[]string{"status", "--kubeconfig", "/nonexistent/kubeconfig"}, "loading kubeconfig"},
		{[]string{"status", "--kubeconfig", badKubeconfig, "--request-timeout", "2s"}, "listing Models"},
		{[]string{"status", "--kubeconfig", env.Kubeconfig, "--context", "nope"}, `context "nope" does not exist`},
	} {
		code, out, errOut := run(ctx, nil, tc.args...)
		if code != cortexcli.ExitError || out != "" || !strings.Contains(errOut, tc.want) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want exit 1 and %q", tc.args, code, out, errOut, tc.want)
		}
	}
	if code, out, _ := run(ctx, nil, "status", "--help"); code != cortexcli.ExitOK || out != "" {
		t.Errorf("--help: exit %d", code)
	}
}

func hasModel(r fleet.Report, key string) bool {
	for _, m := range r.Models {
		if m.Model == key {
			return true
		}
	}
	return false
}

// sameReport compares what both sources know about: nodes are
// cluster-wide and other tests' nodes come and go, so only this fixture's
// models and their problems are compared, with the status.
func sameReport(a, b fleet.Report) bool {
	ja, _ := json.Marshal([]any{a.Status, a.Models, a.Unservable})
	jb, _ := json.Marshal([]any{b.Status, b.Models, b.Unservable})
	return a.Status != "" && bytes.Equal(ja, jb)
}

// frameWriter signals each table frame --watch writes.
type frameWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	frames chan struct{}
}

func (w *frameWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if bytes.Contains(p, []byte("FLEET ")) {
		select {
		case w.frames <- struct{}{}:
		default:
		}
	}
	return w.buf.Write(p)
}

func (w *frameWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func putNode(t *testing.T, ctx context.Context, name string, ready bool, gpus ...cortexv1.GPU) {
	t.Helper()
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: name}}
	must(t, env.Client.Create(ctx, nn))
	t.Cleanup(func() { _ = env.Client.Delete(context.Background(), nn) })
	cond := metav1.Condition{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatFresh, LastTransitionTime: metav1.Now()}
	if !ready {
		cond.Status, cond.Reason, cond.Message = metav1.ConditionFalse, cortexv1.ReasonHeartbeatStale, "no heartbeat for 2m"
	}
	nn.Status.Endpoint = "http://127.0.0.1:1"
	nn.Status.GPUs = gpus
	nn.Status.Conditions = []metav1.Condition{cond}
	must(t, env.Client.Status().Update(ctx, nn))
}

func putModel(t *testing.T, ctx context.Context, ns, name string, nodeNames []string, phase cortexv1.ModelPhase, replicas ...cortexv1.Replica) {
	t.Helper()
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	m.Spec.Source.URI = "https://models.example/" + name + ".gguf"
	m.Spec.Replicas = cortexv1.ReplicaRange{Min: 0, Max: 1}
	m.Spec.Placement.NodeNames = nodeNames
	must(t, env.Client.Create(ctx, m))
	t.Cleanup(func() {
		_ = env.Client.Delete(context.Background(), m, client.PropagationPolicy(metav1.DeletePropagationBackground))
	})
	m.Status.Phase = phase
	m.Status.Replicas = replicas
	m.Status.DesiredReplicas = int32(len(replicas))
	must(t, env.Client.Status().Update(ctx, m))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
