package fleetsim

import (
	"bufio"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"time"
)

// Request is one request of a trace.
type Request struct {
	// At is the arrival, seconds from the start of the run.
	At float64
	// Model is the index of the model asked for.
	Model int
	// In and Out are the prompt and completion lengths in tokens.
	In, Out int
	// Blocks are the prompt's prefix-chained block ids (one per
	// BlockTokens tokens; equal leading ids mean a shared prefix); empty
	// when the trace has no prefix structure.
	Blocks []uint64
}

// BlockTokens is the tokens per prefix block (Mooncake's hash_ids).
const BlockTokens = 512

// Trace is a list of requests in arrival order.
type Trace struct {
	// Name says where it came from (file, seed, transformations).
	Name     string
	Requests []Request
}

// Duration is the time from the start to the last arrival.
func (t *Trace) Duration() float64 {
	if len(t.Requests) == 0 {
		return 0
	}
	return t.Requests[len(t.Requests)-1].At
}

// LoadAzure reads an Azure LLM inference trace (TIMESTAMP, ContextTokens,
// GeneratedTokens); arrivals are made relative to the first.
func LoadAzure(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening trace: %w", err)
	}
	defer func() { _ = f.Close() }()
	r := csv.NewReader(bufio.NewReader(f))
	head, err := r.Read()
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(head) != 3 || head[0] != "TIMESTAMP" {
		return nil, fmt.Errorf("%s: not an Azure LLM trace (header %q)", path, head)
	}
	t := &Trace{Name: path}
	var t0 time.Time
	for line := 2; ; line++ {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		at, err := time.Parse("2006-01-02 15:04:05.9999999", rec[0])
		if err != nil {
			return nil, fmt.Errorf("%s:%d: timestamp: %w", path, line, err)
		}
		in, err1 := strconv.Atoi(rec[1])
		out, err2 := strconv.Atoi(rec[2])
		if err := errors.Join(err1, err2); err != nil || in < 0 || out < 0 {
			return nil, fmt.Errorf("%s:%d: bad token counts %q", path, line, rec[1:])
		}
		if t0.IsZero() {
			t0 = at
		}
		t.Requests = append(t.Requests, Request{At: at.Sub(t0).Seconds(), In: max(in, 1), Out: max(out, 1)})
	}
	return t.sorted()
}

// LoadMooncake reads a Mooncake trace (JSON lines with timestamp in ms,
// input_length, output_length, hash_ids).
func LoadMooncake(path string) (*Trace, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening trace: %w", err)
	}
	defer func() { _ = f.Close() }()
	t := &Trace{Name: path}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for line := 1; sc.Scan(); line++ {
		var rec struct {
			Timestamp float64  `json:"timestamp"`
			In        int      `json:"input_length"`
			Out       int      `json:"output_length"`
			HashIDs   []uint64 `json:"hash_ids"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			return nil, fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if rec.In < 0 || rec.Out < 0 || rec.Timestamp < 0 {
			return nil, fmt.Errorf("%s:%d: negative field", path, line)
		}
		t.Requests = append(t.Requests, Request{At: rec.Timestamp / 1000, In: max(rec.In, 1), Out: max(rec.Out, 1), Blocks: rec.HashIDs})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	return t.sorted()
}

func (t *Trace) sorted() (*Trace, error) {
	if len(t.Requests) == 0 {
		return nil, fmt.Errorf("%s: no requests", t.Name)
	}
	slices.SortStableFunc(t.Requests, func(a, b Request) int {
		switch {
		case a.At < b.At:
			return -1
		case a.At > b.At:
			return 1
		}
		return 0
	})
	return t, nil
}

// Repeat lays the trace end to end n times (a day from an hour), each copy
// starting a gap after the previous one's last arrival.
func (t *Trace) Repeat(n int) *Trace {
	d := t.Duration() + 1
	out := &Trace{Name: fmt.Sprintf("%s ×%d", t.Name, n), Requests: make([]Request, 0, len(t.Requests)*n)}
	for i := range n {
		for _, r := range t.Requests {
			r.At += float64(i) * d
			out.Requests = append(out.Requests, r)
		}
	}
	return out
}

// Scale compresses time by factor (2 = twice the arrival rate).
func (t *Trace) Scale(factor float64) *Trace {
	out := &Trace{Name: fmt.Sprintf("%s at %g× rate", t.Name, factor), Requests: slices.Clone(t.Requests)}
	for i := range out.Requests {
		out.Requests[i].At /= factor
	}
	return out
}

// Head keeps the requests arriving in the first d seconds.
func (t *Trace) Head(d float64) *Trace {
	i, _ := slices.BinarySearchFunc(t.Requests, d, func(r Request, d float64) int {
		if r.At < d {
			return -1
		}
		return 1
	})
	return &Trace{Name: fmt.Sprintf("%s, first %gs", t.Name, d), Requests: t.Requests[:i]}
}

// AssignByFirstBlock gives each request model (first block mod n), so
// that requests sharing a prefix, and so each conversation, go to one of n
// models with their prefix structure intact; requests with no blocks go to
// model 0.
func (t *Trace) AssignByFirstBlock(n int) *Trace {
	out := &Trace{Name: fmt.Sprintf("%s, model by first block over %d models", t.Name, n), Requests: slices.Clone(t.Requests)}
	for i := range out.Requests {
		if b := out.Requests[i].Blocks; len(b) > 0 {
			out.Requests[i].Model = int(b[0] % uint64(n))
		}
	}
	return out
}

// AssignZipf draws each request's model from a Zipf law of exponent s
// over n models (model 0 the most popular), seeded.
func (t *Trace) AssignZipf(n int, s float64, seed uint64) *Trace {
	cdf := make([]float64, n)
	var sum float64
	for i := range n {
		sum += 1 / math.Pow(float64(i+1), s)
		cdf[i] = sum
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a17))
	out := &Trace{Name: fmt.Sprintf("%s, Zipf s=%g over %d models, seed %d", t.Name, s, n, seed), Requests: slices.Clone(t.Requests)}
	for i := range out.Requests {
		u := rng.Float64() * sum
		m, _ := slices.BinarySearch(cdf, u)
		out.Requests[i].Model = min(m, n-1)
	}
	return out
}
