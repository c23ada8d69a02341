package gateway

// peerCounter says how many gateway replicas share the per-key limits.
type peerCounter interface {
	count() int
}

// staticPeers is a replica count given by configuration.
type staticPeers int

func (n staticPeers) count() int { return max(int(n), 1) }

// initKeys wires the keyring and the per-key limits to the metrics.
func (g *Gateway) initKeys() {
	g.keyMetrics = newKeyMetrics(g.metrics.registry)
	g.peers = staticPeers(g.cfg.KeyLimitReplicas)
	g.keyMetrics.replicas.Set(float64(g.peers.count()))
	g.keys.onError = g.keyMetrics.reloadErrors.Inc
	g.keys.onLoad = func(n int) { g.keyMetrics.keys.Set(float64(n)) }
	g.keyMetrics.keys.Set(float64(len(g.keys.keys)))
}
