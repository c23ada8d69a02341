package realengine

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// TestNeuronProcess builds cmd/neuron and drives the binary over HTTP: a
// capped CPU host, a load, a greedy completion, a load that does not fit,
// and a graceful SIGTERM.
func TestNeuronProcess(t *testing.T) {
	skipShort(t)
	root, err := filepath.Abs(filepath.Join("..", "..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "neuron")
	build := exec.Command("go", "build", "-o", bin, "./cmd/neuron")
	build.Dir = root
	build.Env = os.Environ()
	if os.Getenv("CGO_CPPFLAGS") == "" {
		build.Env = append(build.Env, "CGO_CPPFLAGS=-I"+filepath.Join(root, "hack", "include"))
	}
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the neuron: %v\n%s", err, out)
	}
	tokenFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin,
		"--addr", "127.0.0.1:0", "--token-file", tokenFile, "--cache-dir", filepath.Join(dir, "cache"),
		"--memory-limit", "64Mi", "--disable-nvml", "--threads", "1", "--node-name", "proc-node",
		"--shutdown-timeout", "5s")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	addr := make(chan string, 1)
	var logs strings.Builder
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			var entry map[string]any
			if json.Unmarshal([]byte(line), &entry) == nil && entry["msg"] == "Neuron serving" {
				addr <- entry["addr"].(string)
			}
		}
		exited <- cmd.Wait()
	}()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	}()
	var a string
	select {
	case a = <-addr:
	case err := <-exited:
		t.Fatalf("neuron exited early: %v\n%s", err, logs.String())
	case <-ctx.Done():
		t.Fatalf("neuron never served\n%s", logs.String())
	}
	h := &harness{t: t, url: "http://" + a}

	resp, err := http.Get(h.url + neuronapi.PathHealthz)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz: %v %v", resp, err)
	}
	resp.Body.Close()
	code, data := h.request(ctx, http.MethodGet, neuronapi.PathDiscovery, nil)
	d := decode[neuronapi.Discovery](t, data)
	if code != 200 || d.Node != "proc-node" || len(d.Devices) != 1 || d.Devices[0].Kind != "cpu" || d.Devices[0].MemoryTotal != 64<<20 {
		t.Fatalf("discovery: %d %s", code, data)
	}

	h.loadStories(stories, neuronapi.EngineConfig{ContextLength: 512, Parallel: 2})
	if text := greedyCompletion(t, h, stories, "Once upon a time", 32).Choices[0].Text; !strings.HasPrefix(text, wantLily) {
		t.Fatalf("completion %q", text)
	}
	// A context this long cannot fit the 64 MiB host.
	code, data = h.post(neuronapi.PathLoad, neuronapi.LoadRequest{Name: "ns/huge", Source: neuronapi.Source{URI: "file://" + storiesPath(t)},
		Engine: neuronapi.EngineConfig{ContextLength: 65536, Parallel: 8}})
	if code != http.StatusInsufficientStorage {
		t.Fatalf("oversized load: %d %s", code, data)
	}
	var eb openai.ErrorBody
	if err := json.Unmarshal(data, &eb); err != nil || eb.Error.Code == nil || *eb.Error.Code != neuronapi.CodeInsufficientMemory {
		t.Fatalf("error body %s", data)
	}

	// SIGTERM: a graceful exit with status 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("neuron exited with %v\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatalf("neuron did not stop on SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "Neuron stopped") {
		t.Fatalf("no clean shutdown in the log:\n%s", logs.String())
	}

}
