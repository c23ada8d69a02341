// Package e2e runs cortex end to end on one machine: a real kube-apiserver
// and etcd, the manager, the gateway and two neurons as real processes with
// the real llama.cpp engine (internal/localstack, the same stack `make run`
// starts), driven with kubectl and the official OpenAI and Anthropic Go
// SDKs.
//
// The tests share the stack and run in file order (t1_…, t2_…, t3_…): the
// first applies the Model the dialect tests use; each leaves both neurons up.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/types"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/localstack"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/testenv"
)

const ns = "e2e"

var (
	st      *localstack.Stack
	kubectl string
	cache   string
	work    string
)

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintf(os.Stderr, "FAIL: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	assets, err := testenv.Assets()
	if err != nil {
		return 1, err
	}
	root := testenv.RepoRoot()
	shared := filepath.Join(root, "..", "shared", "models", "stories260K.gguf")
	if _, err := os.Stat(shared); err != nil {
		return 1, fmt.Errorf("the test model is missing: %w", err)
	}
	work, err = os.MkdirTemp("", "cortex-e2e-")
	if err != nil {
		return 1, err
	}
	defer func() { _ = os.RemoveAll(work) }()
	bin := filepath.Join(work, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "./cmd/manager", "./cmd/gateway", "./cmd/neuron")
	build.Dir = root
	build.Env = os.Environ()
	if os.Getenv("CGO_CPPFLAGS") == "" {
		// What the Makefile exports: the stub header llama.cpp needs.
		build.Env = append(build.Env, "CGO_CPPFLAGS=-I"+filepath.Join(root, "hack", "include"))
	}
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return 1, fmt.Errorf("building the binaries: %w", err)
	}
	cache = filepath.Join(work, "cache")
	if _, err := localstack.SeedCache(cache, shared); err != nil {
		return 1, err
	}
	ctx := context.Background()
	st, err = localstack.Start(ctx, localstack.Options{
		Dir: filepath.Join(work, "stack"), BinDir: bin, Assets: assets,
		CRDDir: filepath.Join(root, "config", "crd", "bases"), CacheDir: cache,
		Neurons:    []localstack.NeuronSpec{{Name: "neuron-a", MemoryLimit: "1Gi"}, {Name: "neuron-b", MemoryLimit: "1Gi"}},
		StaleAfter: 4 * time.Second, PollInterval: 300 * time.Millisecond, Heartbeat: time.Second,
	})
	if err != nil {
		return 1, err
	}
	defer func() {
		if err := st.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping the stack:", err)
		}
	}()
	kctl, err := (&testenv.Env{Assets: assets}).Kubectl()
	if err != nil {
		return 1, err
	}
	kubectl = kctl
	if _, err := run("create", "namespace", ns); err != nil {
		return 1, err
	}
	code := m.Run()
	if code != 0 {
		for _, name := range []string{"manager", "gateway", "neuron-a", "neuron-b"} {
			fmt.Fprintf(os.Stderr, "--- last lines of %s log:\n%s\n", name, tail(st.LogPath(name), 40))
		}
	}
	return code, nil
}

func tail(path string, n int) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// run runs kubectl against the stack.
func run(args ...string) (string, error) {
	cmd := exec.Command(kubectl, append([]string{"--kubeconfig", st.Kubeconfig}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kubectl %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return out.String(), nil
}

func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// apply applies a Model manifest with kubectl.
func apply(t *testing.T, manifest string) {
	t.Helper()
	path := filepath.Join(work, fmt.Sprintf("model-%d.yaml", time.Now().UnixNano()))
	if err := os.WriteFile(path, []byte(manifest), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "apply", "-n", ns, "-f", path)
}

func modelManifest(name, file, spec string) string {
	return fmt.Sprintf("apiVersion: cortex.helexa.ai/v1alpha1\nkind: Model\nmetadata:\n  name: %s\nspec:\n  source:\n    uri: file://%s\n%s",
		name, filepath.Join(cache, file), spec)
}

func getModel(t *testing.T, name string) *cortexv1.Model {
	t.Helper()
	m := &cortexv1.Model{}
	if err := st.Client.Get(context.Background(), types.NamespacedName{Namespace: ns, Name: name}, m); err != nil {
		t.Fatal(err)
	}
	return m
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last: %s", timeout, what, state)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(m *cortexv1.Model) string {
	s := fmt.Sprintf("phase=%s ready=%s nodes=%q", m.Status.Phase, m.Status.Ready, m.Status.Nodes)
	if m.Status.KeepAlive != nil {
		s += fmt.Sprintf(" keepAlive=%s(%s)", m.Status.KeepAlive.Duration, m.Status.KeepAliveSource)
	}
	for _, c := range m.Status.Conditions {
		s += fmt.Sprintf(" %s=%s(%s)", c.Type, c.Status, c.Message)
	}
	return s
}

// resident lists what a neuron holds, asking the neuron itself.
func resident(t *testing.T, node string) []string {
	t.Helper()
	resp, err := neuronapi.NewClient(st.NeuronToken).Models(context.Background(), st.NeuronURLs[node])
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range resp.Models {
		out = append(out, m.Name)
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

// post sends a raw request to the gateway.
func post(t *testing.T, path string, body any) (*http.Response, string) {
	t.Helper()
	data, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, st.GatewayURL+path, bytes.NewReader(data))
	req.Header.Set("Authorization", "Bearer "+st.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	out, _ := io.ReadAll(resp.Body)
	return resp, string(out)
}

// metric reads one sample's value from a /metrics page (0 when absent).
func metric(t *testing.T, url, series string) float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), series+" ") {
			v, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(sc.Text(), series)), 64)
			return v
		}
	}
	return 0
}

func waitNodeReady(t *testing.T, node string, ready bool) {
	t.Helper()
	want := "True"
	if !ready {
		want = "False"
	}
	eventually(t, 30*time.Second, node+" Ready="+want, func() (bool, string) {
		nn := &cortexv1.NeuronNode{}
		if err := st.Client.Get(context.Background(), types.NamespacedName{Name: node}, nn); err != nil {
			return false, err.Error()
		}
		c := meta.FindStatusCondition(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady)
		return c != nil && string(c.Status) == want, fmt.Sprintf("%+v", c)
	})
}
