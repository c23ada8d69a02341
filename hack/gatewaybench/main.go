// Command gatewaybench measures what the gateway costs: the same requests
// go straight to a stub backend and through the gateway to it, on loopback,
// streaming and not, at rising concurrency. It prints a table of req/s (and
// their ratio) and of the latency the gateway adds at p50 and p99.
//
// The stub answers at once from precomputed bytes, so everything measured
// beyond the direct path is the gateway's own work (parse, route, relay).
// On a small machine the load generator, the gateway and the stub share the
// CPUs, which the table's throughput ratio reflects.
//
// With -overload it runs the overload sweep instead (overload.go).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/gateway"
)

func main() {
	duration := flag.Duration("duration", 3*time.Second, "how long each cell runs")
	concs := flag.String("concurrency", "1,4,16,64", "concurrency levels")
	chunks := flag.Int("chunks", 16, "chunks per streamed answer")
	chunkDelay := flag.Duration("chunk-delay", 0, "pause before each streamed chunk (0: a backend that costs nothing)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run here")
	modes := flag.String("modes", "json,stream", "which modes to run")
	flag.Parse()
	if *overload {
		if err := runOverload(); err != nil {
			fmt.Fprintln(os.Stderr, "overload sweep:", err)
			os.Exit(1)
		}
		return
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			panic(err)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	stub := startStub(*chunks, *chunkDelay)
	gw := startGateway(stub)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}}

	fmt.Printf("gateway vs direct, loopback, %s per cell, stub with %d-chunk streams, %s before each chunk\n\n", *duration, *chunks, *chunkDelay)
	fmt.Printf("| mode | conc | direct req/s | gateway req/s | ratio | direct p50 | gateway p50 | added p50 | direct p99 | gateway p99 | added p99 |\n")
	fmt.Printf("|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, mode := range strings.Split(*modes, ",") {
		stream := mode == "stream"
		for _, cs := range strings.Split(*concs, ",") {
			var conc int
			if _, err := fmt.Sscan(cs, &conc); err != nil || conc < 1 {
				fmt.Fprintf(os.Stderr, "bad concurrency %q\n", cs)
				os.Exit(2)
			}
			d := run(client, stub+"/v1/chat/completions", "team/bench", stream, conc, *duration)
			g := run(client, gw+"/v1/chat/completions", "bench", stream, conc, *duration)
			fmt.Printf("| %s | %d | %.0f | %.0f | %.3f | %s | %s | %s | %s | %s | %s |\n", mode, conc,
				d.rps, g.rps, g.rps/d.rps, ms(d.p50), ms(g.p50), ms(g.p50-d.p50), ms(d.p99), ms(g.p99), ms(g.p99-d.p99))
		}
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond)) }

type result struct {
	rps      float64
	p50, p99 time.Duration
}

func run(client *http.Client, url, model string, stream bool, conc int, d time.Duration) result {
	body := []byte(fmt.Sprintf(`{"model":%q,"stream":%v,"messages":[{"role":"system","content":"You are terse."},{"role":"user","content":"Say hello."}]}`, model, stream))
	// Warm connections.
	for range conc {
		_ = one(client, url, body)
	}
	var mu sync.Mutex
	var lat []time.Duration
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := one(client, url, body); err != nil {
					fmt.Fprintln(os.Stderr, "request failed:", err)
					os.Exit(1)
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	return result{
		rps: float64(len(lat)) / elapsed.Seconds(),
		p50: lat[len(lat)/2],
		p99: lat[min(len(lat)-1, len(lat)*99/100)],
	}
}

func one(client *http.Client, url string, body []byte) error {
	resp, err := client.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// startStub serves chat completions from precomputed bytes.
func startStub(chunks int, delay time.Duration) string {
	jsonAnswer := []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"team/bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hello there, how can I help you today?"},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":10,"total_tokens":22}}`)
	var sb strings.Builder
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"team/bench","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}` + "\n\n")
	for range chunks {
		sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"team/bench","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}` + "\n\n")
	}
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"team/bench","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}` + "\n\n")
	sb.WriteString(`data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"team/bench","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":16,"total_tokens":28}}` + "\n\n")
	sb.WriteString("data: [DONE]\n\n")
	streamAnswer := []byte(sb.String())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if bytes.Contains(body, []byte(`"stream":true`)) {
			w.Header().Set("Content-Type", "text/event-stream")
			w.WriteHeader(http.StatusOK)
			// Flush per event, as a real neuron does.
			rest := streamAnswer
			fl := w.(http.Flusher)
			for len(rest) > 0 {
				if delay > 0 {
					time.Sleep(delay)
				}
				i := bytes.Index(rest, []byte("\n\n")) + 2
				_, _ = w.Write(rest[:i])
				fl.Flush()
				rest = rest[i:]
			}
			return
		}
		// A plain answer comes after the whole generation.
		if delay > 0 {
			time.Sleep(time.Duration(chunks) * delay)
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jsonAnswer)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = http.Serve(ln, h) }()
	return "http://" + ln.Addr().String()
}

// startGateway runs the gateway handler with a hand-fed catalog that routes
// model "bench" to the stub.
func startGateway(stub string) string {
	cfg := gateway.DefaultConfig()
	cfg.AllowAnonymous = true
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		panic(err)
	}
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: "stub"}}
	nn.Status.Endpoint = stub
	nn.Status.Conditions = []metav1.Condition{{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue}}
	g.Catalog().UpsertNode(nn)
	m := &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "bench"}}
	m.Status.Replicas = []cortexv1.Replica{{Node: "stub", State: cortexv1.ReplicaReady}}
	g.Catalog().UpsertModel(m)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	srv := &http.Server{Handler: g.Handler(logr.Discard()), BaseContext: func(net.Listener) context.Context { return context.Background() }}
	go func() { _ = srv.Serve(ln) }()
	return "http://" + ln.Addr().String()
}
