package neuron

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/helexa-ai/cortex/internal/chat"
	"github.com/helexa-ai/cortex/internal/engine"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/wire/openai"
)

// lease is a request's hold on a ready model; release it when done.
type lease struct {
	r    *registry
	m    *model
	eng  engine.Model
	tmpl *chat.Template
	info engine.Info
	once sync.Once
}

// prefillSmoothing is the weight of each request in a model's measured
// prefill rate; prefillMinTokens the fewest uncached prompt tokens a
// request needs to count (a short prompt's time is mostly overhead).
const (
	prefillSmoothing = 0.2
	prefillMinTokens = 16
)

// observePrefill folds one request's prompt processing into the model's
// prefill rate (neuronapi.HeaderPrefillRate).
func (l *lease) observePrefill(tokens int, d time.Duration) {
	if tokens < prefillMinTokens || d <= 0 {
		return
	}
	rate := float64(tokens) / d.Seconds()
	l.r.mu.Lock()
	defer l.r.mu.Unlock()
	if l.m.prefillRate > 0 {
		rate = l.m.prefillRate + prefillSmoothing*(rate-l.m.prefillRate)
	}
	l.m.prefillRate = rate
}

// setPrefillRate puts the model's measured prefill rate on an answer's
// headers, when there is one.
func (l *lease) setPrefillRate(h http.Header) {
	l.r.mu.Lock()
	rate := l.m.prefillRate
	l.r.mu.Unlock()
	if rate > 0 {
		h.Set(neuronapi.HeaderPrefillRate, strconv.FormatFloat(rate, 'f', 1, 64))
	}
}

func (l *lease) release() {
	l.once.Do(func() {
		l.r.mu.Lock()
		defer l.r.mu.Unlock()
		l.m.inflight--
		if l.m.inflight == 0 && l.m.idle != nil {
			close(l.m.idle)
			l.m.idle = nil
		}
	})
}

// acquire takes a lease on a ready model.
// touch marks the model used (for keep-alive and eviction): inference
// does, token counting does not.
func (r *registry) acquire(name string, touch bool) (*lease, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.models[name]
	if !ok {
		return nil, openai.ModelNotFound(name)
	}
	switch m.state {
	case neuronapi.StateReady:
	case neuronapi.StateLoading:
		detail := ""
		if m.progress != nil {
			detail = fmt.Sprintf("%s, %d%%", m.progress.Phase, m.progress.Percent)
		}
		return nil, errModelNotReady(name, m.state, detail, 5*time.Second)
	case neuronapi.StateFailed:
		return nil, errModelNotReady(name, m.state, "its load failed: "+m.errMsg, 30*time.Second)
	default:
		return nil, errModelNotReady(name, m.state, "", time.Second)
	}
	m.inflight++
	if touch {
		m.lastUsed = r.now()
		m.requests++
	}
	return &lease{r: r, m: m, eng: m.eng, tmpl: m.tmpl, info: m.info}, nil
}
