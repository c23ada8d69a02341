package gateway

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clocktesting "k8s.io/utils/clock/testing"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"
	"sigs.k8s.io/controller-runtime/pkg/client/interceptor"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// Requests that wait together share one demand write per interval; a wait
// that ended (the Model served) does not delay the next one's write.
func TestDemandThrottlesWithinAWaitNotAcrossWaits(t *testing.T) {
	scheme := runtime.NewScheme()
	if err := cortexv1.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	var writes atomic.Int32
	c := fake.NewClientBuilder().WithScheme(scheme).
		WithObjects(&cortexv1.Model{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "m"}}).
		WithInterceptorFuncs(interceptor.Funcs{Patch: func(ctx context.Context, cl client.WithWatch, obj client.Object, p client.Patch, opts ...client.PatchOption) error {
			writes.Add(1)
			return cl.Patch(ctx, obj, p, opts...)
		}}).Build()
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	d := &Demand{Client: c, Clock: clk, Interval: 5 * time.Second}
	settle := func(want int32) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			d.mu.Lock()
			busy := d.busy["ns/m"]
			d.mu.Unlock()
			if !busy && writes.Load() == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("writes = %d, want %d", writes.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	ctx := context.Background()
	d.Signal(ctx, "ns/m")
	settle(1)
	clk.SetTime(clk.Now().Add(time.Second))
	d.Signal(ctx, "ns/m") // same wait, within the interval: coalesced
	settle(1)
	d.Served("ns/m")
	clk.SetTime(clk.Now().Add(time.Second))
	d.Signal(ctx, "ns/m") // a new wait: written at once
	settle(2)
	clk.SetTime(clk.Now().Add(5 * time.Second))
	d.Signal(ctx, "ns/m") // the same wait, an interval later
	settle(3)
}
