package placement

import (
	"fmt"
	"slices"
	"strings"
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
	need := gib(m.in.BytesNeeded)
	if best.total == 0 {
		switch m.in.Devices {
		case 0:
			return fmt.Sprintf("needs %s on one node; no candidate node has free memory", need)
		case 1:
			return fmt.Sprintf("needs %s on one GPU; no candidate node has free memory", need)
		default:
			return fmt.Sprintf("needs %s across %s; no candidate node has free memory", need, gpus(m.in.Devices))
		}
	}
	evictable := ""
	if e := best.total - best.now; e > 0 {
		evictable = "including " + gib(e) + " evictable"
	}
	switch m.in.Devices {
	case 1:
		if evictable != "" {
			evictable = " (" + evictable + ")"
		}
		return fmt.Sprintf("needs %s on one GPU; largest free is %s on %s%s", need, gib(best.total), best.node, evictable)
	case 0:
		if evictable != "" {
			evictable = ", " + evictable
		}
		return fmt.Sprintf("needs %s on one node; best is %s on %s (%s%s)", need, gib(best.total), best.node, gpus(best.gpus), evictable)
	default:
		if evictable != "" {
			evictable = ", " + evictable
		}
		return fmt.Sprintf("needs %s across %s; best is %s on %s (%s%s)",
			need, gpus(m.in.Devices), gib(best.total), best.node, gpus(best.gpus), evictable)
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

// gib formats bytes as GiB with one decimal.
func gib(b int64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

func gpus(n int) string {
	if n == 1 {
		return "1 GPU"
	}
	return fmt.Sprintf("%d GPUs", n)
}
