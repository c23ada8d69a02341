package controllers

import (
	"testing"
	"time"

	"github.com/helexa-ai/cortex/internal/neuronapi"
)

func TestNextPoll(t *testing.T) {
	ready := neuronapi.ModelStatus{Name: "ns/a", State: neuronapi.StateReady}
	loading := neuronapi.ModelStatus{Name: "ns/b", State: neuronapi.StateLoading}
	tests := []struct {
		name             string
		models           []neuronapi.ModelStatus
		requeue, loading time.Duration
		want             time.Duration
	}{
		{"nothing loading: the poll interval", []neuronapi.ModelStatus{ready}, 5 * time.Second, 0, 5 * time.Second},
		{"empty node", nil, 5 * time.Second, 0, 5 * time.Second},
		{"a load under way: the default loading interval", []neuronapi.ModelStatus{ready, loading}, 5 * time.Second, 0, DefaultLoadingPollInterval},
		{"a load under way, interval set", []neuronapi.ModelStatus{loading}, 5 * time.Second, 300 * time.Millisecond, 300 * time.Millisecond},
		{"never slower than the poll interval", []neuronapi.ModelStatus{loading}, 200 * time.Millisecond, time.Second, 200 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextPoll(tt.models, tt.requeue, tt.loading); got != tt.want {
				t.Errorf("nextPoll = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPollBound(t *testing.T) {
	tests := []struct {
		name            string
		staleAfter, age time.Duration
		want            time.Duration
	}{
		{"fresh heartbeat: the whole staleness", 30 * time.Second, 0, 30 * time.Second},
		{"the time left before it goes stale", 30 * time.Second, 10 * time.Second, 20 * time.Second},
		{"nearly stale: never under half the staleness", 30 * time.Second, 29 * time.Second, 15 * time.Second},
		{"already stale by the time it polls", 4 * time.Second, 5 * time.Second, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pollBound(tt.staleAfter, tt.age); got != tt.want {
				t.Errorf("pollBound(%s, %s) = %s, want %s", tt.staleAfter, tt.age, got, tt.want)
			}
		})
	}
}
