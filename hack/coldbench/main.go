// Command coldbench measures how long an unloaded model takes to answer on
// a real neuron — from the load order to the first streamed token — and
// sets it against its physical floor measured in the same run: the file's
// bytes over the sequential read bandwidth of the same file, plus the
// engine's fixed cost (the same path for a tiny model: load order, engine
// init, context, first token), plus the model's own first token once warm
// (the compute no load can avoid) for a prompt of as many tokens that
// shares no prefix with the first one: the same prompt again would find
// its tokens in the prefix cache and skip the prompt processing the first
// request after a load cannot skip. It runs twice: with the file in the page
// cache, and cold, after the file's pages are dropped from the cache
// (posix_fadvise DONTNEED, which needs no privilege and touches no other
// file).
//
//	go run ./hack/coldbench -neuron bin/neuron            # ~850 MB Q8_0 model
//	go run ./hack/coldbench -neuron bin/neuron -size 100M # quicker
//
// `make bench-cold` builds the neuron and runs it. The generated model has
// random weights; only its size and shape matter here.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/sys/unix"

	"github.com/helexa-ai/cortex/internal/gguf/ggufgen"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/units"
)

var shapes = map[string]ggufgen.LlamaParams{
	"100M": {Layers: 12, Embd: 768, Heads: 12, HeadsKV: 4, FF: 2048, Vocab: 32000},
	"800M": {Layers: 16, Embd: 2048, Heads: 16, HeadsKV: 4, FF: 5632, Vocab: 32000},
}

func main() {
	neuron := flag.String("neuron", "bin/neuron", "neuron binary")
	size := flag.String("size", "800M", "generated model shape: 100M or 800M (Q8_0: ~110 MB or ~850 MB)")
	tiny := flag.String("tiny", "../shared/models/stories260K.gguf", "tiny model whose load-to-first-token is the engine's fixed cost")
	dir := flag.String("dir", "", "work directory (default a temporary one)")
	runs := flag.Int("runs", 3, "runs per case; the median is shown")
	flag.Parse()
	if err := run(*neuron, *size, *tiny, *dir, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "coldbench:", err)
		os.Exit(1)
	}
}

func run(neuronBin, size, tiny, dir string, runs int) error {
	shape, ok := shapes[size]
	if !ok {
		return fmt.Errorf("unknown -size %q (100M or 800M)", size)
	}
	if runs < 1 {
		return errors.New("-runs must be at least 1")
	}
	tinyPath, err := filepath.Abs(tiny)
	if err != nil {
		return err
	}
	if _, err := os.Stat(tinyPath); err != nil {
		return fmt.Errorf("tiny model: %w", err)
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "coldbench-")
		if err != nil {
			return err
		}
		defer func() { _ = os.RemoveAll(d) }()
		dir = d
	}
	model := filepath.Join(dir, "llama"+size+"-q8_0.gguf")
	if _, err := os.Stat(model); err != nil {
		fmt.Fprintf(os.Stderr, "writing %s...\n", model)
		shape.WeightType, shape.Seed = "q8_0", 1
		if err := writeModel(model, shape); err != nil {
			return err
		}
	}
	st, err := os.Stat(model)
	if err != nil {
		return err
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n, err := startNeuron(ctx, neuronBin, dir)
	if err != nil {
		return err
	}
	defer n.stop()

	type row struct {
		cache                     string
		readBW                    float64 // bytes per second
		fixed, warm, floor, total time.Duration
	}
	var rows []row
	for _, cold := range []bool{false, true} {
		var bws []float64
		var fixeds, warms, totals []time.Duration
		for range runs {
			// The floor's parts, measured next to each load.
			bw, err := readBandwidth(model, cold)
			if err != nil {
				return err
			}
			bws = append(bws, bw)
			f, _, err := n.loadToFirstToken(ctx, "bench/tiny", tinyPath)
			if err != nil {
				return fmt.Errorf("tiny model: %w", err)
			}
			fixeds = append(fixeds, f)
			if cold {
				if err := dropCache(model); err != nil {
					return err
				}
			} else if _, err := readBandwidth(model, false); err != nil {
				return err
			}
			t, w, err := n.loadToFirstToken(ctx, "bench/big", model)
			if err != nil {
				return fmt.Errorf("%s: %w", filepath.Base(model), err)
			}
			totals, warms = append(totals, t), append(warms, w)
		}
		r := row{cache: "page cache", readBW: median(bws), fixed: median(fixeds), warm: median(warms), total: median(totals)}
		if cold {
			r.cache = "cold (pages dropped)"
		}
		r.floor = r.fixed + r.warm + time.Duration(float64(st.Size())/r.readBW*float64(time.Second))
		rows = append(rows, r)
	}

	fmt.Printf("Cold load to first token, %s (%s, Q8_0), median of %d runs\n\n", filepath.Base(model), units.Bytes(st.Size()), runs)
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file\tread MB/s\tbytes/read\tfixed (tiny model)\twarm first token\tfloor\tload→first token\t× floor\t")
	for _, r := range rows {
		read := time.Duration(float64(st.Size()) / r.readBW * float64(time.Second))
		fmt.Fprintf(tw, "%s\t%.0f\t%s\t%s\t%s\t%s\t%s\t%.2f\t\n", r.cache, r.readBW/1e6, ms(read), ms(r.fixed), ms(r.warm), ms(r.floor), ms(r.total),
			r.total.Seconds()/r.floor.Seconds())
	}
	return tw.Flush()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1000) }

func median[T float64 | time.Duration](xs []T) T {
	s := append([]T(nil), xs...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s[len(s)/2]
}

func writeModel(path string, p ggufgen.LlamaParams) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	if err := ggufgen.WriteRandomLlama(f, p); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(path+".tmp", path)
}

// dropCache evicts the file's pages from the page cache.
func dropCache(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { _ = f.Close() }()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("dropping %s from the page cache: %w", path, err)
	}
	return nil
}

// readBandwidth reads the whole file sequentially, after dropping it from
// the page cache when cold, and returns bytes per second.
func readBandwidth(path string, cold bool) (float64, error) {
	if cold {
		if err := dropCache(path); err != nil {
			return 0, err
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer func() { _ = f.Close() }()
	buf := make([]byte, 4<<20)
	start := time.Now()
	var total int64
	for {
		k, err := f.Read(buf)
		total += int64(k)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, err
		}
	}
	return float64(total) / time.Since(start).Seconds(), nil
}

type neuronProc struct {
	cmd  *exec.Cmd
	base string
	http *http.Client
}

func startNeuron(ctx context.Context, bin, dir string) (*neuronProc, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	_ = l.Close()
	cmd := exec.CommandContext(ctx, bin, "--addr", addr, "--node-name", "coldbench", "--disable-registration",
		"--allow-unauthenticated", "--disable-nvml", "--cache-dir", filepath.Join(dir, "cache"))
	logf, err := os.Create(filepath.Join(dir, "neuron.log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	n := &neuronProc{cmd: cmd, base: "http://" + addr, http: &http.Client{Timeout: 10 * time.Minute}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := n.http.Get(n.base + neuronapi.PathHealthz)
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return n, nil
			}
		}
		if time.Now().After(deadline) {
			n.stop()
			return nil, fmt.Errorf("neuron did not answer within 30 s (log: %s)", logf.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (n *neuronProc) stop() {
	_ = n.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = n.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
	}
}

func (n *neuronProc) post(ctx context.Context, path string, body any) (*http.Response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	return n.http.Do(req)
}

// loadToFirstToken orders a load of the file as name, waits for it to be
// Ready, streams a one-token completion and returns the time from the load
// order to the first streamed token, and the same completion's time to
// first token once the model is warm; then unloads it.
func (n *neuronProc) loadToFirstToken(ctx context.Context, name, path string) (cold, warm time.Duration, err error) {
	start := time.Now()
	resp, err := n.post(ctx, neuronapi.PathLoad, neuronapi.LoadRequest{Name: name, Source: neuronapi.Source{URI: "file://" + path}})
	if err != nil {
		return 0, 0, err
	}
	msg, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return 0, 0, fmt.Errorf("load answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	defer func() {
		if r, err := n.post(context.Background(), neuronapi.PathUnload, neuronapi.UnloadRequest{Name: name}); err == nil {
			_ = r.Body.Close()
		}
	}()
	if err := n.waitReady(ctx, name); err != nil {
		return 0, 0, err
	}
	if err := n.firstToken(ctx, name, coldPrompt); err != nil {
		return 0, 0, err
	}
	cold = time.Since(start)
	warmPrompt, err := n.warmPrompt(ctx, name)
	if err != nil {
		return 0, 0, err
	}
	start = time.Now()
	if err := n.firstToken(ctx, name, warmPrompt); err != nil {
		return 0, 0, err
	}
	return cold, time.Since(start), nil
}

// coldPrompt is what the first request after a load asks.
const coldPrompt = "Once upon a time"

// warmCandidates are tried in turn for the warm measurement's prompt:
// coldPrompt with its first word replaced, so that a tokenizer (even one
// of a few hundred tokens) likely gives as many tokens.
var warmCandidates = func() []string {
	var out []string
	for _, w := range []string{"The", "One", "He", "She", "It", "A", "They", "We", "In", "On", "Then", "There", "Lily", "Tom", "Sam", "Max"} {
		out = append(out, w+strings.TrimPrefix(coldPrompt, "Once"))
	}
	return out
}()

// warmPrompt is the first candidate with as many tokens as coldPrompt and
// at most two in common at its start (a BOS token, and the word-start
// marker some tokenizers put first), by the model's own tokenizer. Those
// two shared tokens make the floor a little lower than it is, never
// higher.
func (n *neuronProc) warmPrompt(ctx context.Context, name string) (string, error) {
	cold, err := n.tokenize(ctx, name, coldPrompt)
	if err != nil {
		return "", err
	}
	var tried []string
	for _, p := range warmCandidates {
		t, err := n.tokenize(ctx, name, p)
		if err != nil {
			return "", err
		}
		tried = append(tried, fmt.Sprintf("%q: %v", p, t))
		shared := 0
		for shared < len(t) && shared < len(cold) && t[shared] == cold[shared] {
			shared++
		}
		if len(t) == len(cold) && shared <= 2 {
			return p, nil
		}
	}
	return "", fmt.Errorf("no warm prompt has as many tokens as %q (%v) and at most two tokens of prefix in common with it; tried %s", coldPrompt, cold, strings.Join(tried, ", "))
}

func (n *neuronProc) tokenize(ctx context.Context, name, text string) ([]int, error) {
	resp, err := n.post(ctx, neuronapi.PathTokenize, neuronapi.TokenizeRequest{Model: name, Text: text})
	if err != nil {
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	var tr neuronapi.TokenizeResponse
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("tokenize answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return nil, err
	}
	return tr.Tokens, nil
}

// firstToken streams a one-token completion and returns at its first
// token, after reading the rest of the stream.
func (n *neuronProc) firstToken(ctx context.Context, name, prompt string) error {
	resp, err := n.post(ctx, neuronapi.PathCompletions, map[string]any{
		"model": name, "prompt": prompt, "max_tokens": 1, "stream": true, "temperature": 0,
	})
	if err != nil {
		return err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("completion answered %s: %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), "data: {") {
			_, _ = io.Copy(io.Discard, resp.Body)
			return nil
		}
	}
	return fmt.Errorf("stream ended without a token: %w", sc.Err())
}

func (n *neuronProc) waitReady(ctx context.Context, name string) error {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+neuronapi.PathModels, nil)
		if err != nil {
			return err
		}
		resp, err := n.http.Do(req)
		if err != nil {
			return err
		}
		var mr neuronapi.ModelsResponse
		err = json.NewDecoder(resp.Body).Decode(&mr)
		_ = resp.Body.Close()
		if err != nil {
			return err
		}
		for _, m := range mr.Models {
			if m.Name != name {
				continue
			}
			switch m.State {
			case neuronapi.StateReady:
				return nil
			case neuronapi.StateFailed:
				return fmt.Errorf("load failed: %s", m.Error)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
}
