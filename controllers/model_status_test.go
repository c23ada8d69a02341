package controllers

import (
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
)

// TestComputeStatus covers every phase and both conditions of a Model's
// status as a pure function of one pass's facts.
func TestComputeStatus(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	rep := func(node string, s cortexv1.ReplicaState) cortexv1.Replica {
		return cortexv1.Replica{Node: node, State: s}
	}
	failedRep := rep("n3", cortexv1.ReplicaFailed)
	failedRep.LastError = "checksum mismatch"
	evicted := &evictionNote{node: "n1", forModel: "ns/other", at: at}

	type want struct {
		phase            cortexv1.ModelPhase
		ready            metav1.ConditionStatus
		readyReason      string
		readyMsg         string // substring
		scheduled        metav1.ConditionStatus
		scheduledReason  string
		scheduledMsg     string // substring
		readyCol, nodes  string
		vram             string
		lastDemandIsZero bool
	}
	for _, tc := range []struct {
		name string
		f    statusFacts
		want want
	}{
		{
			name: "nothing wanted, nothing held: Idle",
			f:    statusFacts{VRAMBytes: 2 << 30},
			want: want{phase: cortexv1.ModelPhaseIdle, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonNoDemand,
				readyMsg: "the first request loads one", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonNoDemand,
				readyCol: "0/0", vram: "2.0Gi", lastDemandIsZero: true},
		},
		{
			name: "every wanted replica ready: Ready",
			f: statusFacts{Desired: 2, VRAMBytes: 1 << 30, LastDemand: at,
				Replicas: []cortexv1.Replica{rep("n1", cortexv1.ReplicaReady), rep("n2", cortexv1.ReplicaReady)}},
			want: want{phase: cortexv1.ModelPhaseReady, ready: metav1.ConditionTrue, readyReason: cortexv1.ReasonReplicasReady,
				readyMsg: "2 of 2 replicas ready", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "2/2", nodes: "n1,n2", vram: "1.0Gi"},
		},
		{
			name: "some ready, one loading: Degraded",
			f: statusFacts{Desired: 2, VRAMBytes: 1 << 30,
				Replicas: []cortexv1.Replica{rep("n1", cortexv1.ReplicaReady), rep("n2", cortexv1.ReplicaLoading)}},
			want: want{phase: cortexv1.ModelPhaseDegraded, ready: metav1.ConditionTrue, readyReason: cortexv1.ReasonPartiallyReady,
				readyMsg: "1 of 2", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "1/2", nodes: "n1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "only loading: Loading",
			f:    statusFacts{Desired: 1, VRAMBytes: 1 << 30, Replicas: []cortexv1.Replica{rep("n1", cortexv1.ReplicaLoading)}},
			want: want{phase: cortexv1.ModelPhaseLoading, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonReplicasLoading,
				readyMsg: "1 replicas loading", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "no node for a wanted replica: Unschedulable",
			f:    statusFacts{Desired: 1, VRAMBytes: 1 << 30, Unschedulable: "needs 1.0 GiB on one node; best is 0 bytes on n1 (1 GPU)"},
			want: want{phase: cortexv1.ModelPhaseUnschedulable, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonUnschedulable,
				readyMsg: "needs 1.0 GiB", scheduled: metav1.ConditionFalse, scheduledReason: cortexv1.ReasonUnschedulable,
				scheduledMsg: "best is 0 bytes", readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "memory need being read: Pending, not Unschedulable",
			f:    statusFacts{Desired: 1, EstimateMsg: estimatingMsg, Unschedulable: "memory need unknown (no VRAM estimate yet)"},
			want: want{phase: cortexv1.ModelPhasePending, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonPending,
				readyMsg: estimatingMsg, scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "0/1", lastDemandIsZero: true},
		},
		{
			name: "memory need cannot be read: Unschedulable with the estimate's error",
			f:    statusFacts{Desired: 1, EstimateMsg: "estimating memory: source unavailable", Unschedulable: "memory need unknown (no VRAM estimate yet)"},
			want: want{phase: cortexv1.ModelPhaseUnschedulable, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonUnschedulable,
				readyMsg: "source unavailable", scheduled: metav1.ConditionFalse, scheduledReason: cortexv1.ReasonUnschedulable,
				scheduledMsg: "source unavailable", readyCol: "0/1", lastDemandIsZero: true},
		},
		{
			name: "a failed replica: Failed with its error",
			f:    statusFacts{Desired: 1, VRAMBytes: 1 << 30, Replicas: []cortexv1.Replica{failedRep}},
			want: want{phase: cortexv1.ModelPhaseFailed, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonLoadFailed,
				readyMsg: "checksum mismatch", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "a remembered load failure, nothing held: Failed",
			f:    statusFacts{Desired: 1, VRAMBytes: 1 << 30, LastError: "out of memory on n1"},
			want: want{phase: cortexv1.ModelPhaseFailed, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonLoadFailed,
				readyMsg: "out of memory on n1", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "wanted, placed, nothing reported yet: Pending",
			f:    statusFacts{Desired: 1, VRAMBytes: 1 << 30},
			want: want{phase: cortexv1.ModelPhasePending, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonPending,
				readyMsg: "waiting for placement", scheduled: metav1.ConditionTrue, scheduledReason: cortexv1.ReasonPlaced,
				readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
		{
			name: "evicted for another Model, no request waiting: Idle, reason Evicted, the planner's message kept",
			f: statusFacts{Desired: 1, VRAMBytes: 1 << 30, Evicted: evicted,
				Unschedulable: "needs 1.0 GiB on one node; best is 0 bytes on n1 (1 GPU)"},
			want: want{phase: cortexv1.ModelPhaseIdle, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonEvicted,
				readyMsg: "evicted from n1 at 2026-03-01T12:00:00Z to make room for ns/other", scheduled: metav1.ConditionFalse,
				scheduledReason: cortexv1.ReasonUnschedulable, scheduledMsg: "needs 1.0 GiB", readyCol: "0/1", vram: "1.0Gi",
				lastDemandIsZero: true},
		},
		{
			name: "evicted, and a request now waits for it: Unschedulable again",
			f: statusFacts{Desired: 1, VRAMBytes: 1 << 30, Evicted: evicted, Waiting: true,
				Unschedulable: "needs 1.0 GiB on one node; best is 0 bytes on n1 (1 GPU)"},
			want: want{phase: cortexv1.ModelPhaseUnschedulable, ready: metav1.ConditionFalse, readyReason: cortexv1.ReasonUnschedulable,
				readyMsg: "needs 1.0 GiB", scheduled: metav1.ConditionFalse, scheduledReason: cortexv1.ReasonUnschedulable,
				scheduledMsg: "needs 1.0 GiB", readyCol: "0/1", vram: "1.0Gi", lastDemandIsZero: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.f.Generation = 7
			st := computeStatus(tc.f)
			w := tc.want
			if st.Phase != w.phase {
				t.Errorf("phase = %s, want %s", st.Phase, w.phase)
			}
			if st.ObservedGeneration != 7 || st.Ready != w.readyCol || st.Nodes != w.nodes || st.VRAM != w.vram {
				t.Errorf("generation %d ready %q nodes %q vram %q; want 7 %q %q %q",
					st.ObservedGeneration, st.Ready, st.Nodes, st.VRAM, w.readyCol, w.nodes, w.vram)
			}
			if (st.LastDemandTime == nil) != w.lastDemandIsZero {
				t.Errorf("lastDemandTime = %v", st.LastDemandTime)
			}
			check := func(typ string, status metav1.ConditionStatus, reason, msg string) {
				t.Helper()
				c := meta.FindStatusCondition(st.Conditions, typ)
				if c == nil {
					t.Fatalf("no %s condition", typ)
				}
				if c.Status != status || c.Reason != reason || !strings.Contains(c.Message, msg) || c.ObservedGeneration != 7 {
					t.Errorf("%s = %s/%s %q (gen %d); want %s/%s containing %q", typ, c.Status, c.Reason, c.Message,
						c.ObservedGeneration, status, reason, msg)
				}
			}
			check(cortexv1.ModelConditionReady, w.ready, w.readyReason, w.readyMsg)
			check(cortexv1.ModelConditionScheduled, w.scheduled, w.scheduledReason, w.scheduledMsg)
		})
	}
}

// An unchanged condition keeps its transition time, so an unchanged Model
// costs no status write.
func TestComputeStatusKeepsTransitionTimes(t *testing.T) {
	f := statusFacts{Desired: 1, VRAMBytes: 1 << 30, Replicas: []cortexv1.Replica{{Node: "n1", State: cortexv1.ReplicaReady}}}
	first := computeStatus(f)
	old := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	for i := range first.Conditions {
		first.Conditions[i].LastTransitionTime = old
	}
	f.Conditions = first.Conditions
	again := computeStatus(f)
	for _, c := range again.Conditions {
		if !c.LastTransitionTime.Equal(&old) {
			t.Errorf("%s transition time moved to %v", c.Type, c.LastTransitionTime)
		}
	}
	if f.Conditions[0].LastTransitionTime != old {
		t.Error("computeStatus changed the previous conditions in place")
	}
}
