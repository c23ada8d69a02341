package controllers

import (
	"math"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/placement"
)

func TestFleetMeasuresRequestRates(t *testing.T) {
	f := NewFleet()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	loaded := t0.Add(-time.Hour)
	reloaded := t0.Add(20 * time.Minute)
	status := func(name string, requests int64, at time.Time) neuronapi.ModelStatus {
		return neuronapi.ModelStatus{Name: name, State: neuronapi.StateReady, LoadedAt: &at, Requests: requests}
	}
	perMin := func(model string, at time.Time) float64 { return f.RequestRate(model, at) * 60 }

	// Both Models are known from the start; ns/b's replica on n1 is first
	// seen with no requests.
	f.RequestRate("ns/a", t0)
	f.RequestRate("ns/b", t0)
	// ns/a: 10 requests a minute on n1 and 2 a minute on n2, as the
	// neurons' counters grow over 30 minutes of polls.
	for i := 0; i <= 30; i++ {
		at := t0.Add(time.Duration(i) * time.Minute)
		f.Set("n1", Observation{At: at, Models: []neuronapi.ModelStatus{status("ns/a", int64(10*i), loaded), status("ns/b", 0, loaded)}})
		f.Set("n2", Observation{At: at, Models: []neuronapi.ModelStatus{status("ns/a", int64(2*i), loaded)}})
	}
	at := t0.Add(30 * time.Minute)
	if got := perMin("ns/a", at); math.Abs(got-12) > 0.5 {
		t.Fatalf("ns/a: %.2f requests a minute, want about 12", got)
	}
	if got := perMin("ns/b", at); got != 0 {
		t.Fatalf("ns/b: %.2f requests a minute, want 0", got)
	}

	// ns/b is reloaded on n1 (its counter starts again from a new load
	// time) and serves 3 requests: all 3 count, although the counter is
	// below what n1 reported before for nothing.
	f.Set("n1", Observation{At: at.Add(time.Minute), Models: []neuronapi.ModelStatus{status("ns/a", 310, loaded), status("ns/b", 3, reloaded)}})
	f.Set("n1", Observation{At: at.Add(2 * time.Minute), Models: []neuronapi.ModelStatus{status("ns/a", 320, loaded), status("ns/b", 3, reloaded)}})
	// Weighed as the estimator does: 3 requests a minute old, over 32
	// minutes observed.
	tau := placement.RateWindow.Minutes()
	want := 3 * math.Exp(-1/tau) / (tau * (1 - math.Exp(-32/tau)))
	if got := perMin("ns/b", at.Add(2*time.Minute)); math.Abs(got-want) > 0.001 {
		t.Fatalf("ns/b after a reload: %.3f requests a minute, want about %.3f", got, want)
	}

	// A Model first seen with a count (a manager restart) is measured over
	// its replica's time since the load, not as a burst.
	f.Set("n3", Observation{At: at, Models: []neuronapi.ModelStatus{status("ns/c", 120, loaded.Add(30*time.Minute))}})
	if got := perMin("ns/c", at); math.Abs(got-2) > 0.1 {
		t.Fatalf("ns/c: %.2f requests a minute, want about 2 (120 over the hour since its load)", got)
	}

	// A deleted Model's rate is forgotten; asked again, it starts anew.
	f.Forget(func(m string) bool { return m != "ns/a" })
	if got := f.RequestRate("ns/a", at.Add(3*time.Minute)); got != 0 {
		t.Fatalf("ns/a after it was forgotten: %v, want 0", got)
	}
}

// The Fleet learns idle gaps from every poll's last use and the Models'
// demand signals; chooseKeepAlive applies what it learned only to Models
// without spec.keepAlive, and only with enough gaps.
func TestKeepAliveLearnedFromPolls(t *testing.T) {
	f := NewFleet()
	r := &ModelReconciler{Fleet: f, ColdStartWorth: DefaultColdStartWorth}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	model := func(name string, ka *metav1.Duration) *cortexv1.Model {
		return &cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name}, Spec: cortexv1.ModelSpec{KeepAlive: ka}}
	}
	learned, fixed := model("a", nil), model("b", &metav1.Duration{Duration: time.Hour})
	const bytes = 40 * (int64(1) << 30)
	poll := func(at, used time.Time) {
		f.Set("n1", Observation{At: at, Models: []neuronapi.ModelStatus{
			{Name: "ns/a", State: neuronapi.StateReady, LastUsed: &used},
			{Name: "ns/b", State: neuronapi.StateReady, LastUsed: &used},
		}})
	}
	// Requests every 10 minutes, each seen by a poll (and seen again by
	// the polls in between, which adds nothing). The first is no gap; the
	// weight decays, so it takes one gap more than MinIdleObservations.
	at := t0
	for i := range placement.MinIdleObservations + 2 {
		if c := r.chooseKeepAlive(learned, bytes); i <= placement.MinIdleObservations && (c.source != cortexv1.KeepAliveDefault || c.d != defaultKeepAlive) {
			t.Fatalf("after %d polls: %+v, want the 15m default", i, c)
		}
		at = at.Add(10 * time.Minute)
		poll(at, at)
		poll(at.Add(5*time.Second), at)
	}
	// A 40 GiB model idle 10 minutes between requests holds 6.7 GiB·h per
	// gap, more than a cold start's 4: unloaded as soon as allowed.
	if c := r.chooseKeepAlive(learned, bytes); c.source != cortexv1.KeepAliveLearned || c.d != placement.MinKeepAlive || c.gaps < 8 {
		t.Fatalf("learned %+v, want 30s from 9 gaps", c)
	}
	if c := r.chooseKeepAlive(fixed, bytes); c.source != cortexv1.KeepAliveFromSpec || c.d != time.Hour {
		t.Fatalf("with spec.keepAlive: %+v, want 1h from the spec", c)
	}
	// The same gaps for a 1 GiB model cost less than a cold start each:
	// kept through them.
	if c := r.chooseKeepAlive(learned, 1<<30); c.d != 10*time.Minute {
		t.Fatalf("1 GiB model: %+v, want 10m", c)
	}
	// A restarted manager keeps what the previous one learned (status)
	// until it has seen enough gaps of its own.
	restarted := &ModelReconciler{Fleet: NewFleet(), ColdStartWorth: DefaultColdStartWorth}
	learned.Status.KeepAlive, learned.Status.KeepAliveSource = &metav1.Duration{Duration: 2 * time.Minute}, cortexv1.KeepAliveLearned
	if c := restarted.chooseKeepAlive(learned, bytes); c.source != cortexv1.KeepAliveLearned || c.d != 2*time.Minute || !strings.Contains(c.String(), "before the manager restarted") {
		t.Fatalf("after a restart: %+v (%s), want the 2m learned before", c, c)
	}
	if c := r.chooseKeepAlive(learned, bytes); c.d != placement.MinKeepAlive || c.inherited {
		t.Fatalf("with gaps of its own: %+v, want its own 30s", c)
	}
	if c := restarted.chooseKeepAlive(fixed, bytes); c.source != cortexv1.KeepAliveFromSpec {
		t.Fatalf("spec after a restart: %+v", c)
	}
	learned.Status = cortexv1.ModelStatus{}
	// Learning off, or the size unknown: the default.
	off := &ModelReconciler{Fleet: f}
	if c := off.chooseKeepAlive(learned, bytes); c.source != cortexv1.KeepAliveDefault {
		t.Fatalf("learning off: %+v", c)
	}
	if c := r.chooseKeepAlive(learned, 0); c.source != cortexv1.KeepAliveDefault {
		t.Fatalf("size unknown: %+v", c)
	}
	// A demand signal is a gap that ended cold; a deleted Model's gaps are
	// forgotten.
	_, before := f.LearnedKeepAlive("ns/a", bytes, DefaultColdStartWorth*gibHour, 0)
	f.ObserveDemand("ns/a", at.Add(3*time.Hour))
	if _, after := f.LearnedKeepAlive("ns/a", bytes, DefaultColdStartWorth*gibHour, 0); after <= before {
		t.Fatalf("gap weight %g after a demand signal, was %g", after, before)
	}
	f.Forget(func(m string) bool { return m != "ns/a" })
	if _, w := f.LearnedKeepAlive("ns/a", bytes, DefaultColdStartWorth*gibHour, 0); w != 0 {
		t.Fatalf("forgotten Model still has gaps of weight %g", w)
	}
}
