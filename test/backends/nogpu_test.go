package backends

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Where the CUDA backend and its runtime come from for TestCUDABuildWithoutGPU.
const (
	// cudaLibEnv names a built libggml-cuda.so. Unset: the test looks where
	// `make cuda` and `make cuda-check` write it.
	cudaLibEnv = "CORTEX_CUDA_LIBRARY"
	// cudaRuntimeEnv names the folder holding libcudart.so.11.0 and
	// libcublas.so.11 (default: the toolkit hack/cuda-toolkit.sh unpacked),
	// so that the one thing missing is the driver, as on a CPU node.
	cudaRuntimeEnv = "CORTEX_CUDA_RUNTIME_DIR"
)

// TestCUDABuildWithoutGPU runs the neuron binary with the real
// libggml-cuda.so in its library folder on a host with no GPU and no
// driver: it must start, report no GPU in /discovery (why, and that the
// CUDA backend did not load), say so once in its log, and serve on the CPU.
//
// It skips only when no libggml-cuda.so has been built (`make cuda-check`);
// CI builds one and sets CORTEX_CUDA_LIBRARY, and then a missing file fails.
func TestCUDABuildWithoutGPU(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the neuron binary")
	}
	lib := cudaLibrary(t)
	if hostHasDriver() {
		t.Skip("this host has an NVIDIA driver (libcuda.so.1 or /dev/nvidiactl); the test is for hosts without one")
	}
	runtimeDir := cudaRuntimeDir(t)

	work := t.TempDir()
	bin := filepath.Join(work, "bin")
	libDir := filepath.Join(work, "lib", "ollama")
	if err := os.MkdirAll(libDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, lib, filepath.Join(libDir, "libggml-cuda.so"))

	// The setup must be what a CPU node sees: the library and the CUDA
	// runtime are there, only the driver's libcuda.so.1 is not.
	ldd, _ := exec.Command("env", "LD_LIBRARY_PATH="+runtimeDir, "ldd", filepath.Join(libDir, "libggml-cuda.so")).CombinedOutput()
	var notFound []string
	for _, l := range strings.Split(string(ldd), "\n") {
		if strings.Contains(l, "not found") {
			notFound = append(notFound, strings.Fields(l)[0])
		}
	}
	if !slices.Equal(notFound, []string{"libcuda.so.1"}) {
		t.Fatalf("with LD_LIBRARY_PATH=%s, libggml-cuda.so should miss only the driver's libcuda.so.1; ldd says missing %v:\n%s", runtimeDir, notFound, ldd)
	}

	build := exec.Command("go", "build", "-o", filepath.Join(bin, "neuron"), "./cmd/neuron")
	build.Dir = filepath.Join("..", "..")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/neuron: %v\n%s", err, out)
	}

	addr := freeAddr(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "neuron"), "--addr", addr, "--allow-unauthenticated",
		"--disable-registration", "--node-name", "no-gpu", "--cache-dir", filepath.Join(work, "cache"),
		"--library-path", libDir)
	cmd.Env = append(scrubbedEnv(), "LD_LIBRARY_PATH="+runtimeDir)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	}()
	api := "http://" + addr
	waitReady(t, api, &logs)

	var d neuronapi.Discovery
	getJSON(t, api+neuronapi.PathDiscovery, &d)
	t.Logf("discovery: backends %v, cpuBackend %q, libraries %v, noGPU %q", d.Backends, d.CPUBackend, d.Libraries, d.NoGPU)
	if !slices.Equal(d.Backends, []string{"cpu"}) {
		t.Errorf("backends = %v, want [cpu]", d.Backends)
	}
	if len(d.Devices) != 1 || d.Devices[0].Kind != "cpu" {
		t.Errorf("devices = %+v, want the CPU only", d.Devices)
	}
	if !strings.Contains(d.NoGPU, "NVML unavailable") || !strings.Contains(d.NoGPU, "libggml-cuda.so is present but did not load") {
		t.Errorf("noGPU = %q, want NVML unavailable and the CUDA backend not loaded", d.NoGPU)
	}
	if d.CPUBackend != "built-in" || slices.Contains(d.Libraries, "libggml-cuda.so") {
		t.Errorf("cpuBackend %q, libraries %v: want the built-in CPU backend and no CUDA library loaded", d.CPUBackend, d.Libraries)
	}

	// It serves on the CPU: stories260K's greedy continuation.
	body := fmt.Sprintf(`{"name":"t/stories","source":{"uri":"file://%s"},"engine":{}}`, storiesPath(t))
	post(t, api+neuronapi.PathLoad, body, nil)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var ms neuronapi.ModelsResponse
		getJSON(t, api+neuronapi.PathModels, &ms)
		if len(ms.Models) == 1 && ms.Models[0].State == "ready" {
			break
		}
		if len(ms.Models) == 1 && ms.Models[0].State == "failed" || time.Now().After(deadline) {
			t.Fatalf("model not ready: %+v\n%s", ms.Models, tail(logs.String(), 3000))
		}
		time.Sleep(200 * time.Millisecond)
	}
	var resp struct {
		Choices []struct {
			Text string `json:"text"`
		} `json:"choices"`
	}
	post(t, api+"/v1/completions", `{"model":"t/stories","prompt":"`+prompt+`","max_tokens":16,"temperature":0}`, &resp)
	if len(resp.Choices) != 1 || !strings.HasPrefix(storiesGolden, prompt+resp.Choices[0].Text) || resp.Choices[0].Text == "" {
		t.Errorf("completion = %+v, want a prefix of %q after the prompt", resp.Choices, storiesGolden)
	}

	if n := strings.Count(logs.String(), "No GPU: serving on the CPU"); n != 1 {
		t.Errorf("the log says %q %d times, want once:\n%s", "No GPU: serving on the CPU", n, tail(logs.String(), 3000))
	}
}

// cudaLibrary finds the built libggml-cuda.so or skips.
func cudaLibrary(t *testing.T) string {
	if p := os.Getenv(cudaLibEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", cudaLibEnv, p, err)
		}
		return p
	}
	home, _ := os.UserHomeDir()
	for _, p := range []string{
		filepath.Join("..", "..", "lib", "ollama", "libggml-cuda.so"),
		filepath.Join(home, ".cache", "cortex", "cuda-check", "lib", "ollama", "libggml-cuda.so"),
	} {
		if _, err := os.Stat(p); err == nil {
			abs, _ := filepath.Abs(p)
			return abs
		}
	}
	t.Skipf("no libggml-cuda.so built: run `make cuda-check` (or set %s); CI builds it, so there this test runs", cudaLibEnv)
	return ""
}

func cudaRuntimeDir(t *testing.T) string {
	if d := os.Getenv(cudaRuntimeEnv); d != "" {
		return d
	}
	out, err := exec.Command(filepath.Join("..", "..", "hack", "cuda-toolkit.sh")).Output()
	if err != nil {
		t.Fatalf("no CUDA runtime for libggml-cuda.so: set %s or let hack/cuda-toolkit.sh unpack one: %v", cudaRuntimeEnv, err)
	}
	return filepath.Join(filepath.Dir(strings.TrimSpace(string(out))), "lib", "x86_64-linux-gnu")
}

func hostHasDriver() bool {
	if _, err := os.Stat("/dev/nvidiactl"); err == nil {
		return true
	}
	out, _ := exec.Command("/sbin/ldconfig", "-p").Output()
	return bytes.Contains(out, []byte("libcuda.so.1 "))
}

// scrubbedEnv drops what could point the loader or the neuron elsewhere.
func scrubbedEnv() []string {
	var env []string
	for _, e := range os.Environ() {
		k, _, _ := strings.Cut(e, "=")
		switch k {
		case "CORTEX_LIBRARY_PATH", "OLLAMA_LIBRARY_PATH", "GGML_BACKEND_PATH", "KUBECONFIG", "LD_LIBRARY_PATH":
			continue
		}
		env = append(env, e)
	}
	return env
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitReady(t *testing.T, api string, logs *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		resp, err := http.Get(api + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the neuron did not become ready:\n%s", tail(logs.String(), 3000))
}

func getJSON(t *testing.T, url string, out any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}

func post(t *testing.T, url, body string, out any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		t.Fatalf("POST %s: %s %s", url, resp.Status, b.String())
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("POST %s: %v", url, err)
		}
	}
}
