package soak

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// Resources is one process's footprint from its /metrics.
type Resources struct {
	Goroutines, FDs float64
	RSS             float64
	OK              bool
}

func (r Resources) String() string {
	if !r.OK {
		return "—"
	}
	return fmt.Sprintf("%.0f goroutines, %.0f fds, %.1f MiB", r.Goroutines, r.FDs, r.RSS/(1<<20))
}

// resources scrapes go_goroutines, process_open_fds and
// process_resident_memory_bytes.
func resources(ctx context.Context, url string) Resources {
	vals := scrapeAll(ctx, url, "go_goroutines", "process_open_fds", "process_resident_memory_bytes")
	r := Resources{Goroutines: vals["go_goroutines"], FDs: vals["process_open_fds"], RSS: vals["process_resident_memory_bytes"]}
	r.OK = len(vals) == 3
	return r
}

// scrapeAll reads unlabelled samples from a /metrics page.
func scrapeAll(ctx context.Context, url string, names ...string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return out
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return out
	}
	defer func() { _ = resp.Body.Close() }()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || !want[name] {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(val), 64); err == nil {
			out[name] = v
		}
	}
	return out
}

// instance is one load of a model on a node: a new LoadedAt (or a new
// Loading entry after the model was absent) is a new load.
type instance struct {
	node, model string
	loadedAt    time.Time
}

// residency polls every neuron's resident models and counts loads: each
// model instance seen for the first time (by node, model and load time) is
// one load, timed by when it was first seen.
type residency struct {
	neurons map[string]string
	client  *neuronapi.Client

	mu    sync.Mutex
	seen  map[instance]bool
	loads []load
	// loading marks (node, model) pairs last seen Loading, so one load is
	// counted once across its Loading and Ready samples.
	loading map[[2]string]bool
}

type load struct {
	node, model string
	at          time.Time
}

func newResidency(neurons map[string]string, tokens *neuronapi.TokenSource) *residency {
	c := neuronapi.NewClient("")
	c.Tokens = tokens
	c.Timeout = 700 * time.Millisecond
	return &residency{neurons: neurons, client: c, seen: map[instance]bool{}, loading: map[[2]string]bool{}}
}

func (r *residency) run(ctx context.Context, every time.Duration) {
	for {
		r.poll(ctx)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func (r *residency) poll(ctx context.Context) {
	var wg sync.WaitGroup
	for node, url := range r.neurons {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := r.client.Models(ctx, url)
			if err != nil {
				return // dead or hung: nothing to learn
			}
			now := time.Now()
			r.mu.Lock()
			defer r.mu.Unlock()
			present := map[string]bool{}
			for _, m := range resp.Models {
				present[m.Name] = true
				key := [2]string{node, m.Name}
				if m.LoadedAt == nil {
					if m.State == neuronapi.StateLoading && !r.loading[key] {
						r.loading[key] = true
						r.loads = append(r.loads, load{node, m.Name, now})
					}
					continue
				}
				in := instance{node, m.Name, m.LoadedAt.Truncate(time.Millisecond)}
				if !r.seen[in] {
					r.seen[in] = true
					if !r.loading[key] {
						r.loads = append(r.loads, load{node, m.Name, now})
					}
				}
				r.loading[key] = false
			}
			for key := range r.loading {
				if key[0] == node && !present[key[1]] {
					delete(r.loading, key)
				}
			}
		}()
	}
	wg.Wait()
}

// between lists the loads first seen in [from, to).
func (r *residency) between(from, to time.Time) []load {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []load
	for _, l := range r.loads {
		if !l.at.Before(from) && l.at.Before(to) {
			out = append(out, l)
		}
	}
	return out
}
