package placement

import (
	"testing"
	"time"
)

func TestWaiting(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	const window = 15 * time.Second
	tests := []struct {
		name string
		s    DemandSignals
		want bool
	}{
		{"no demand signal", DemandSignals{Window: window}, false},
		{"fresh signal, never loaded", DemandSignals{Demand: ago(2 * time.Second), Window: window}, true},
		{"signal as old as the window", DemandSignals{Demand: ago(window), Window: window}, false},
		{"signal from the future beyond the window (clock skew)", DemandSignals{Demand: now.Add(window), Window: window}, false},
		{"answered: a replica loaded since", DemandSignals{Demand: ago(5 * time.Second), Window: window, LastLoaded: ago(time.Second)}, false},
		{"answered: a replica served since", DemandSignals{Demand: ago(5 * time.Second), Window: window, LastUsed: ago(time.Second)}, false},
		{"served before the signal: waiting again", DemandSignals{Demand: ago(time.Second), Window: window, LastUsed: ago(time.Minute), LastLoaded: ago(time.Hour)}, true},
		{"evicted after the signal", DemandSignals{Demand: ago(5 * time.Second), Window: window, Evicted: ago(time.Second)}, false},
		{"signal after the eviction", DemandSignals{Demand: ago(time.Second), Window: window, Evicted: ago(5 * time.Second)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Waiting(tt.s, now); got != tt.want {
				t.Errorf("Waiting(%+v) = %v, want %v", tt.s, got, tt.want)
			}
		})
	}
}
