package neuron

import (
	"fmt"
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
