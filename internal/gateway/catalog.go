package gateway

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"

	"k8s.io/apimachinery/pkg/api/meta"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/placement"
)

// Catalog is the gateway's read model of the fleet: which names resolve to
// which Model, and which replicas of it are ready on Ready nodes. It is fed
// by informer events (never by calls to the manager) and read on every
// request, so lookups are cheap and never copy the objects.
type Catalog struct {
	mu     sync.RWMutex
	models map[string]*entry    // by Model key
	names  map[string][]string  // served name → Model keys (sorted)
	nodes  map[string]nodeState // by NeuronNode name
	// nodeObjects are the NeuronNodes as last seen, for the fleet report
	// (fleet.go); routing reads only nodes.
	nodeObjects map[string]*cortexv1.NeuronNode
	// waiters are closed when a Model's ready set changes: one channel per
	// Model, shared by everyone waiting, so waiting costs nothing that a
	// request which stops waiting would leave behind.
	waiters map[string]chan struct{}
}

type nodeState struct {
	ready    bool
	endpoint string
	cordoned bool
	labels   map[string]string
}

func (a nodeState) equal(b nodeState) bool {
	return a.ready == b.ready && a.endpoint == b.endpoint && a.cordoned == b.cordoned && maps.Equal(a.labels, b.labels)
}

// placeable reports whether a new replica of m could go to this node (its
// memory aside, which only the manager knows).
func (a nodeState) placeable(name string, m *cortexv1.Model) bool {
	return a.ready && !a.cordoned &&
		placement.NodeAdmits(m.Spec.Placement.NodeSelector, m.Spec.Placement.NodeNames, name, a.labels)
}

// entry is one Model as the gateway routes it.
type entry struct {
	key      string
	model    *cortexv1.Model
	replicas []Replica // ready replicas on Ready nodes, sorted by node
}

// Replica is a routable copy of a Model.
type Replica struct {
	Node     string
	Endpoint string
	// Device is the replica's first GPU on its node ("" when unknown):
	// the neuron runs every Model on one device with one worker, so
	// their loads add up (Balancer).
	Device string
}

// NewCatalog returns an empty catalog.
func NewCatalog() *Catalog {
	return &Catalog{
		models:  map[string]*entry{},
		names:   map[string][]string{},
		nodes:   map[string]nodeState{},
		waiters: map[string]chan struct{}{},

		nodeObjects: map[string]*cortexv1.NeuronNode{},
	}
}

// Lookup resolves a client's model name: a served name or alias, or a Model
// key "<namespace>/<name>". A served name used by Models in several
// namespaces is ambiguous and must be given as a key.
func (c *Catalog) Lookup(name string) (key string, replicas []Replica, err error) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.models[name]; ok {
		return e.key, e.replicas, nil
	}
	keys := c.names[name]
	switch len(keys) {
	case 0:
		return "", nil, errUnknownModel
	case 1:
		e := c.models[keys[0]]
		return e.key, e.replicas, nil
	default:
		return "", nil, &ambiguousError{name: name, keys: slices.Clone(keys)}
	}
}

// Replicas returns a Model's ready replicas.
func (c *Catalog) Replicas(key string) []Replica {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if e, ok := c.models[key]; ok {
		return e.replicas
	}
	return nil
}

// Model returns the Model object (read-only) for a key.
func (c *Catalog) Model(key string) (*cortexv1.Model, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.models[key]
	if !ok {
		return nil, false
	}
	return e.model, true
}

// Wait returns a channel closed at the next change of the Model's ready
// replicas (or its removal).
func (c *Catalog) Wait(key string) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch, ok := c.waiters[key]
	if !ok {
		ch = make(chan struct{})
		c.waiters[key] = ch
	}
	return ch
}

// Models lists every Model, sorted by key, for /v1/models.
func (c *Catalog) Models() []ModelView {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]ModelView, 0, len(c.models))
	for _, e := range c.models {
		v := ModelView{Key: e.key, Model: e.model, Names: e.model.Names()}
		for _, r := range e.replicas {
			v.ReadyNodes = append(v.ReadyNodes, r.Node)
		}
		for name, ns := range c.nodes {
			if ns.placeable(name, e.model) {
				v.SchedulableNodes = append(v.SchedulableNodes, name)
			}
		}
		slices.Sort(v.SchedulableNodes)
		out = append(out, v)
	}
	slices.SortFunc(out, func(a, b ModelView) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// ModelView is one Model as /v1/models shows it.
type ModelView struct {
	Key              string
	Model            *cortexv1.Model
	Names            []string
	ReadyNodes       []string
	SchedulableNodes []string
}

// UpsertModel records a Model's current object.
func (c *Catalog) UpsertModel(m *cortexv1.Model) {
	c.mu.Lock()
	defer c.mu.Unlock()
	key := m.Key()
	if old, ok := c.models[key]; ok {
		c.unindexNames(old)
	}
	e := &entry{key: key, model: m}
	c.models[key] = e
	for _, n := range m.Names() {
		keys := append(c.names[n], key)
		slices.Sort(keys)
		c.names[n] = slices.Compact(keys)
	}
	c.refresh(e)
}

// DeleteModel forgets a Model.
func (c *Catalog) DeleteModel(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.models[key]; ok {
		c.unindexNames(old)
		delete(c.models, key)
	}
	c.wake(key)
}

func (c *Catalog) unindexNames(e *entry) {
	for _, n := range e.model.Names() {
		keys := slices.DeleteFunc(slices.Clone(c.names[n]), func(k string) bool { return k == e.key })
		if len(keys) == 0 {
			delete(c.names, n)
		} else {
			c.names[n] = keys
		}
	}
}

// UpsertNode records a NeuronNode's readiness and endpoint.
func (c *Catalog) UpsertNode(nn *cortexv1.NeuronNode) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nodeObjects[nn.Name] = nn
	ns := nodeState{
		ready:    meta.IsStatusConditionTrue(nn.Status.Conditions, cortexv1.NeuronNodeConditionReady),
		endpoint: nn.Status.Endpoint,
		cordoned: nn.Spec.Unschedulable,
		labels:   maps.Clone(nn.Labels),
	}
	if old, ok := c.nodes[nn.Name]; ok && old.equal(ns) {
		return
	}
	c.nodes[nn.Name] = ns
	c.refreshNode(nn.Name)
}

// DeleteNode forgets a NeuronNode.
func (c *Catalog) DeleteNode(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, name)
	delete(c.nodeObjects, name)
	c.refreshNode(name)
}

func (c *Catalog) refreshNode(name string) {
	for _, e := range c.models {
		if slices.ContainsFunc(e.model.Status.Replicas, func(r cortexv1.Replica) bool { return r.Node == name }) {
			c.refresh(e)
		}
	}
}

// refresh recomputes an entry's ready replicas and wakes its waiters when
// they changed.
func (c *Catalog) refresh(e *entry) {
	var reps []Replica
	for _, r := range e.model.Status.Replicas {
		if r.State != cortexv1.ReplicaReady {
			continue
		}
		ns, ok := c.nodes[r.Node]
		if !ok || !ns.ready {
			continue
		}
		ep := ns.endpoint
		if ep == "" {
			ep = r.Endpoint
		}
		if ep == "" {
			continue
		}
		rep := Replica{Node: r.Node, Endpoint: ep}
		if len(r.Devices) > 0 {
			rep.Device = strconv.Itoa(int(r.Devices[0]))
		}
		reps = append(reps, rep)
	}
	slices.SortFunc(reps, func(a, b Replica) int { return strings.Compare(a.Node, b.Node) })
	changed := !slices.Equal(reps, e.replicas)
	e.replicas = reps
	if changed {
		c.wake(e.key)
	}
}

func (c *Catalog) wake(key string) {
	if ch, ok := c.waiters[key]; ok {
		close(ch)
		delete(c.waiters, key)
	}
}
