package placement

import "time"

// DemandSignals are what tells whether requests are held at the gateway for
// a Model: the gateway's demand signal and what would have answered it.
type DemandSignals struct {
	// Demand is the time of the gateway's last demand signal (the Model's
	// last-demand annotation); zero if none.
	Demand time.Time
	// Window is how fresh Demand must be: the gateway rewrites it every
	// few seconds while requests wait, so a signal older than the window
	// means nobody waits any more.
	Window time.Duration
	// Evicted is when the Model last lost a replica to eviction; zero if
	// not recently.
	Evicted time.Time
	// LastLoaded and LastUsed are the latest load and use of any of the
	// Model's replicas.
	LastLoaded, LastUsed time.Time
}

// Waiting reports whether requests wait for the Model now (Model.Waiting):
// its demand signal is younger than the window, and newer than anything
// that would have answered it — a replica becoming Ready or serving, or the
// Model's last eviction. Without the last part, a Model evicted a second
// after its own cold request was served would look as if that request
// still waited, and evict the next Model in turn. The manager and the fleet
// simulator both decide by this function.
func Waiting(s DemandSignals, now time.Time) bool {
	if s.Demand.IsZero() {
		return false
	}
	if age := now.Sub(s.Demand); age >= s.Window || age <= -s.Window {
		return false
	}
	if !s.Evicted.IsZero() && !s.Demand.After(s.Evicted) {
		return false
	}
	return s.Demand.After(s.LastLoaded) && s.Demand.After(s.LastUsed)
}
