package placement

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// explain says why no node can take a new replica of m, naming the first
// filter that leaves no node: readiness and selectors, cordons, spread,
// GPU count, memory. A model evicted by this plan says so first.
func (p *planner) explain(m *modelState) string {
	if m.evictedFrom != "" {
		return fmt.Sprintf("evicted from %s for %s; %s", m.evictedFrom, m.evictedFor, p.why(m))
	}
	return p.why(m)
}

func (p *planner) why(m *modelState) string {
	var matching, sched, free, enough, clearing int
	var lastCordoned, lastHolding string
	maxDevices := 0
	var best memFit
	for _, n := range p.nodes {
		if !n.ready || !matches(m.in, n) {
			continue
		}
		matching++
		if !n.sched {
			lastCordoned = n.name
			continue
		}
		sched++
		if m.touches(n.idx) {
			lastHolding = n.name
			if !p.holds(m, n) {
				clearing++
			}
			continue
		}
		free++
		maxDevices = max(maxDevices, len(n.devIndex))
		if len(n.devIndex) < m.in.Devices {
			continue
		}
		enough++
		if f := p.memFit(m, n); enough == 1 || f.total > best.total {
			best = f
		}
	}
	switch {
	case matching == 0:
		return "no Ready node" + selectorText(m.in)
	case sched == 0 && matching == 1:
		return fmt.Sprintf("the only matching node %s is cordoned", lastCordoned)
	case sched == 0:
		return fmt.Sprintf("all %d matching nodes are cordoned", matching)
	case free == 0 && sched == 1 && clearing == 0:
		return fmt.Sprintf("the only schedulable node %s already holds a replica (spread)", lastHolding)
	case free == 0 && sched == 1:
		return fmt.Sprintf("the only schedulable node %s is still unloading a replica", lastHolding)
	case free == 0 && clearing == 0:
		return fmt.Sprintf("all %d schedulable nodes already hold a replica (spread)", sched)
	case free == 0:
		return fmt.Sprintf("all %d schedulable nodes already hold a replica (spread) or are unloading one", sched)
	case enough == 0:
		return fmt.Sprintf("needs %s on one node; matching nodes have at most %s",
			gpus(m.in.Devices), gpus(maxDevices))
	}
	// What a replica needs on the devices in question: the per-device
	// buffers count on each of them.
	needBytes := m.in.BytesNeeded
	switch {
	case m.in.Devices > 1:
		needBytes = m.need.Total(m.in.Devices)
	case m.in.Devices == 0 && best.gpus > 1:
		needBytes = m.need.Total(best.gpus)
	}
	need, have := sizes(needBytes, best.total)
	if best.total == 0 {
		wait := p.waitingFor(m, best.node)
		if wait != "" {
			wait = "; on " + best.node + "," + wait[1:]
		}
		switch m.in.Devices {
		case 0:
			return fmt.Sprintf("needs %s on one node; no candidate node has free memory%s", need, wait)
		case 1:
			return fmt.Sprintf("needs %s on one GPU; no candidate node has free memory%s", need, wait)
		default:
			return fmt.Sprintf("needs %s across %s; no candidate node has free memory%s", need, gpus(m.in.Devices), wait)
		}
	}
	evictable := ""
	if e := best.total - best.now; e > 0 {
		evictable = "including " + fmtSize(e) + " evictable"
	}
	switch m.in.Devices {
	case 1:
		if evictable != "" {
			evictable = " (" + evictable + ")"
		}
		return fmt.Sprintf("needs %s on one GPU; largest free is %s on %s%s%s", need, have, best.node, evictable, p.waitingFor(m, best.node))
	case 0:
		if evictable != "" {
			evictable = ", " + evictable
		}
		return fmt.Sprintf("needs %s on one node; best is %s on %s (%s%s)%s", need, have, best.node, gpus(best.gpus), evictable, p.waitingFor(m, best.node))
	default:
		if evictable != "" {
			evictable = ", " + evictable
		}
		return fmt.Sprintf("needs %s across %s; best is %s on %s (%s%s)%s",
			need, gpus(m.in.Devices), have, best.node, gpus(best.gpus), evictable, p.waitingFor(m, best.node))
	}
}

// holds reports whether n keeps or gets a replica of m in this plan (as
// opposed to one failed, unloading, or being unloaded).
func (p *planner) holds(m *modelState, n *nodeState) bool {
	for _, ri := range n.res {
		if rs := &p.res[ri]; rs.model == m && rs.counted && !rs.gone {
			return true
		}
	}
	return slices.ContainsFunc(p.loads, func(l Load) bool { return l.Model == m.in.Key && l.Node == n.name })
}

// memFit is the most memory a node could offer one replica of a model: free
// now plus what the model may evict, on the devices it would use.
type memFit struct {
	node  string
	total int64 // free and evictable
	now   int64 // of which free now
	gpus  int   // devices contributing
}

func (p *planner) memFit(m *modelState, n *nodeState) memFit {
	extra := make([]int64, len(n.free))
	for _, v := range p.victims(m, n) {
		rs := &p.res[v.ri]
		for j, pos := range rs.pos {
			extra[pos] += rs.share[j]
		}
	}
	order := p.byAvail(n, extra)
	k := m.in.Devices
	if k == 0 {
		k = len(order)
	}
	f := memFit{node: n.name}
	for _, pos := range order[:k] {
		if v := p.scratch.vals[pos]; v > 0 {
			f.total += v
			f.now += n.avail(pos)
			f.gpus++
		}
	}
	return f
}

func selectorText(m *Model) string {
	var parts []string
	if len(m.NodeSelector) > 0 {
		kv := make([]string, 0, len(m.NodeSelector))
		for k, v := range m.NodeSelector {
			kv = append(kv, k+"="+v)
		}
		slices.Sort(kv)
		parts = append(parts, "nodeSelector "+strings.Join(kv, ","))
	}
	if len(m.NodeNames) > 0 {
		names := slices.Clone(m.NodeNames)
		slices.Sort(names)
		parts = append(parts, "nodeNames "+strings.Join(names, ","))
	}
	if len(parts) == 0 {
		return ""
	}
	return " matches " + strings.Join(parts, " and ")
}

// waitingFor says what the replicas holding memory on the named node are
// waiting for before m could take it: requests to finish, a fresh replica
// to serve the request it was loaded for, a keep-alive to run out. It names
// at most three and counts the rest; replicas that nothing will free
// (pinned, replicas.min, higher priority in use) are summed up. A model
// with no request waiting is told that one may evict idle replicas of its
// priority.
func (p *planner) waitingFor(m *modelState, node string) string {
	n := p.node(node)
	if n == nil {
		return ""
	}
	var items, held []string
	onDemand := 0
	// A replica this plan loads frees nothing soon, except for a waiting
	// model of its priority: it may be evicted once it has served.
	for _, l := range p.loads {
		if v := p.byKey[l.Model]; l.Node == n.name && m.in.Waiting && v.in.Priority == m.in.Priority {
			items = append(items, l.Model+" to load and serve the request it is loaded for")
		}
	}
	for _, ri := range n.res {
		rs := &p.res[ri]
		v := rs.model
		if v == nil || v == m || !rs.counted || rs.gone {
			continue
		}
		switch {
		case p.evictable(ri, m):
			// Counted as evictable in the figure above.
		case rs.r.InFlight > 0:
			items = append(items, fmt.Sprintf("%s to finish %s", v.in.Key, plural(rs.r.InFlight, "request")))
		case rs.r.State == StateLoading && v.in.Priority < m.in.Priority:
			items = append(items, v.in.Key+" to finish loading")
		case rs.r.State == StateLoading && v.in.Priority == m.in.Priority && m.in.Waiting:
			items = append(items, v.in.Key+" to load and serve the request it is loaded for")
		case v.in.Priority == m.in.Priority && p.fresh(rs) && m.in.Waiting:
			items = append(items, v.in.Key+" to serve the request it was loaded for")
		case v.in.Pinned:
			held = append(held, v.in.Key+" (pinned)")
		case v.live() <= v.in.MinReplicas:
			held = append(held, v.in.Key+" (replicas.min)")
		case v.in.Priority == m.in.Priority && !m.in.Waiting && !p.fresh(rs):
			onDemand++
		default:
			if d := rs.lastActive.Add(v.ka).Sub(p.now); d > 0 {
				items = append(items, fmt.Sprintf("%s to idle out (in %s)", v.in.Key, shortDuration(d)))
			} else {
				held = append(held, v.in.Key+" (higher priority)")
			}
		}
	}
	var parts []string
	if len(items) > 0 {
		if len(items) > 3 {
			items = append(items[:3], fmt.Sprintf("%d more", len(items)-3))
		}
		parts = append(parts, "waiting for "+strings.Join(items, ", "))
	}
	if onDemand > 0 {
		parts = append(parts, fmt.Sprintf("the next request for it may evict %s of equal priority", plural(onDemand, "idle replica")))
	}
	if len(held) > 0 && len(items) == 0 && onDemand == 0 {
		if len(held) > 3 {
			held = append(held[:3], fmt.Sprintf("%d more", len(held)-3))
		}
		parts = append(parts, "held by "+strings.Join(held, ", "))
	}
	if len(parts) == 0 {
		return ""
	}
	return "; " + strings.Join(parts, "; ")
}

// shortDuration renders d to the second below a minute and to the minute
// above: "45s", "14m", "2h5m".
func shortDuration(d time.Duration) string {
	if d < time.Minute {
		return d.Round(time.Second).String()
	}
	s := d.Round(time.Minute).String()
	return strings.TrimSuffix(s, "0s")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// fmtSize formats bytes for a message: GiB from 1 GiB up, MiB from 1 MiB up,
// with one decimal.
func fmtSize(b int64) string { return sizeN(b, 1) }

func sizeN(b int64, decimals int) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.*f GiB", decimals, float64(b)/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.*f MiB", decimals, float64(b)/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.*f KiB", decimals, float64(b)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", b)
}

// sizes formats what a model needs next to what it can have, with as many
// decimals as it takes for two different amounts to read differently
// ("needs 130.2 MiB; best is 130.0 MiB", never "0.1 GiB vs 0.1 GiB"), down
// to exact bytes.
func sizes(need, have int64) (string, string) {
	for d := 1; d <= 3; d++ {
		a, b := sizeN(need, d), sizeN(have, d)
		if a != b || need == have {
			return a, b
		}
	}
	return fmt.Sprintf("%d bytes", need), fmt.Sprintf("%d bytes", have)
}

func gpus(n int) string {
	if n == 1 {
		return "1 GPU"
	}
	return fmt.Sprintf("%d GPUs", n)
}
