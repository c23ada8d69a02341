package gateway

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/engine/enginefake"
	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuron"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// swapFile replaces a file's content at once, as the kubelet swaps a
// Secret volume's data directory.
func swapFile(t *testing.T, p, content string) {
	t.Helper()
	tmp := p + ".new"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
}

// TestNeuronTokenRotationUnderLoad rotates the neuron token three times
// while requests flow through a real gateway to a real neuron (the neuron
// program in process with the fake engine, both on loopback), each side
// reading its own token file as each pod reads its own Secret volume: the
// neuron's file changes first, then the gateway's first, then both
// together. No request may fail.
func TestNeuronTokenRotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	gwToken, nToken := filepath.Join(dir, "gateway-token"), filepath.Join(dir, "neuron-token")
	swapFile(t, gwToken, "tok-A\n")
	swapFile(t, nToken, "tok-A\n")

	// The neuron.
	ncfg := neuron.DefaultConfig()
	ncfg.Addr, ncfg.NodeName, ncfg.CacheDir = "127.0.0.1:0", "n1", t.TempDir()
	ncfg.TokenFile, ncfg.TokenRecheck, ncfg.TokenGrace = nToken, 50*time.Millisecond, time.Minute
	ncfg.DisableRegistration = true
	ncfg.Devices = devices.NewStatic(devices.Device{Index: 0, Kind: devices.KindCPU, Name: "test cpu", MemoryTotal: 1 << 30, MemoryFree: 1 << 30})
	ncfg.Engine = enginefake.New(enginefake.Options{Tokenizer: enginefake.Words})
	ctx, cancel := context.WithCancel(context.Background())
	srv, err := neuron.Start(ctx, ncfg)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		if err := srv.Wait(); err != nil {
			t.Errorf("neuron stopped with %v", err)
		}
	})
	model := filepath.Join(dir, "tiny.gguf")
	f, err := os.Create(model)
	if err != nil {
		t.Fatal(err)
	}
	w := bufio.NewWriter(f)
	if err := ggufgen.WriteRandomLlama(w, ggufgen.LlamaParams{Seed: 1, Context: 1024}); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	control := neuronapi.NewClient("tok-A")
	if _, err := control.Load(ctx, srv.URL(), neuronapi.LoadRequest{Name: "team/llama", Source: neuronapi.Source{URI: "file://" + model}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the condition", func() bool {
		ms, err := control.Models(ctx, srv.URL())
		return err == nil && len(ms.Models) == 1 && ms.Models[0].State == neuronapi.StateReady
	})

	// The gateway, with its own copy of the token.
	h := newHarness(t, func(c *Config) {
		c.NeuronToken, c.NeuronTokenFile, c.NeuronTokenRecheck = "", gwToken, 50*time.Millisecond
	})
	h.g.catalog.UpsertNode(readyNode("n1", srv.URL()))
	h.model("team", "llama", []string{"llama"}, "n1")

	// Load: OpenAI plain and streamed, Anthropic plain and streamed.
	var done, failed, phase atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 30 * time.Second}
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; ; j++ {
				select {
				case <-stop:
					return
				default:
				}
				stream := (i+j)%2 == 0
				path, body := "/v1/chat/completions", `{"model":"llama","max_tokens":4,"stream":`+map[bool]string{true: "true", false: "false"}[stream]+`,"messages":[{"role":"user","content":"hi there"}]}`
				if i%4 == 3 {
					path = "/v1/messages"
				}
				req, _ := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer sk-alice")
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				var text string
				if err == nil {
					text = readAll(t, resp)
				}
				bad := err != nil || resp.StatusCode != http.StatusOK ||
					(stream && path == "/v1/chat/completions" && !strings.Contains(text, "[DONE]")) ||
					(stream && path == "/v1/messages" && !strings.Contains(text, "message_stop")) ||
					strings.Contains(text, `"error"`)
				if bad {
					failed.Add(1)
					failMu.Lock()
					if len(failures) < 5 {
						failures = append(failures, fmt.Sprintf("phase %d %s: %s", phase.Load(), path, text))
						if err != nil {
							failures = append(failures, err.Error())
						}
					}
					failMu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	// progress waits for n more requests to finish: the steps below are
	// paced by traffic, not by the clock.
	progress := func(n int64) {
		want := done.Load() + n
		waitFor(t, "the condition", func() bool { return done.Load() >= want })
	}
	retries := func() float64 {
		mfs, _ := h.g.metrics.registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "cortex_gateway_neuron_token_retries_total" {
				return mf.GetMetric()[0].GetCounter().GetValue()
			}
		}
		return 0
	}
	progress(40)

	// adopted waits until the neuron has read tok: each rotation below
	// starts once the previous one is complete on both sides, as rotations
	// of a Secret are (the neuron keeps one previous token, and re-reads
	// its file at most once a second when a token is unknown).
	adopted := func(tok string) {
		c := neuronapi.NewClient(tok)
		waitFor(t, "the neuron to accept "+tok, func() bool {
			_, err := c.Models(ctx, srv.URL())
			return err == nil
		})
	}

	// 1. The neuron's Secret updates first: it still accepts tok-A.
	phase.Store(1)
	swapFile(t, nToken, "tok-B\n")
	progress(80)
	phase.Store(2)
	swapFile(t, gwToken, "tok-B\n")
	progress(80)
	adopted("tok-B")

	// 2. The gateway's updates first: the neuron refuses tok-C, and the
	// gateway retries with tok-B.
	phase.Store(3)
	before := retries()
	swapFile(t, gwToken, "tok-C\n")
	waitFor(t, "the condition", func() bool { return retries() > before })
	progress(80)
	phase.Store(4)
	swapFile(t, nToken, "tok-C\n")
	progress(80)
	adopted("tok-C")

	// 3. Both at once.
	phase.Store(5)
	swapFile(t, nToken, "tok-D\n")
	swapFile(t, gwToken, "tok-D\n")
	progress(80)

	close(stop)
	wg.Wait()
	t.Logf("%d requests, %d failed, %v gateway retries with the fallback token", done.Load(), failed.Load(), retries())
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during rotations: %q", failed.Load(), done.Load(), failures)
	}
	// The rotation took: the neuron refuses a token two rotations old and
	// accepts the new one.
	if _, err := neuronapi.NewClient("tok-A").Models(ctx, srv.URL()); err == nil {
		t.Fatal("the neuron still accepts tok-A")
	}
	adopted("tok-D")
}
