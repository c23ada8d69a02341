package controllers

import (
	"context"
	"fmt"
	"time"

	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/log"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/neuronapi"
)

// NeuronClient is what the manager needs from a neuron's control API.
type NeuronClient interface {
	Models(ctx context.Context, endpoint string) (*neuronapi.ModelsResponse, error)
	Load(ctx context.Context, endpoint string, req neuronapi.LoadRequest) (*neuronapi.ModelStatus, error)
	Unload(ctx context.Context, endpoint, name string) error
	Estimate(ctx context.Context, endpoint string, req neuronapi.EstimateRequest) (*neuronapi.Estimate, error)
}

// NeuronNodeReconciler decides whether each NeuronNode is Ready (fresh
// heartbeat and an API that answers), keeps the Fleet's view of what the
// neuron holds current by polling GET /models, unloads models no Model
// describes any more, and wakes the Models whose residency changed.
type NeuronNodeReconciler struct {
	client.Client
	Neurons NeuronClient
	Fleet   *Fleet
	Clock   clock.PassiveClock
	// StaleAfter is how old a heartbeat may be before the node turns
	// NotReady.
	StaleAfter time.Duration
	// PollInterval is how often a Ready neuron is polled.
	PollInterval time.Duration
	// LoadingPollInterval is how often a neuron with a load under way is
	// polled (never less often than PollInterval); 0 means
	// DefaultLoadingPollInterval.
	LoadingPollInterval time.Duration
	// Notify receives the keys of Models to reconcile again.
	Notify  func(keys ...string)
	Metrics *Metrics
}

// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=neuronnodes,verbs=get;list;watch
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=neuronnodes/status,verbs=get;update;patch

// Reconcile observes one NeuronNode.
func (r *NeuronNodeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (res ctrl.Result, err error) {
	defer func() {
		if err != nil {
			r.Metrics.ObserveReconcileError(ControllerNeuronNode)
		}
	}()
	nn := &cortexv1.NeuronNode{}
	if err := r.Get(ctx, req.NamespacedName, nn); err != nil {
		if apierrors.IsNotFound(err) {
			r.Notify(r.Fleet.Delete(req.Name)...)
			return ctrl.Result{}, nil
		}
		return ctrl.Result{}, err
	}
	logger := log.FromContext(ctx).WithValues("neuronnode", klogRef(nn))
	ctx = log.IntoContext(ctx, logger)
	original := nn.DeepCopy()
	now := r.Clock.Now()

	cond, requeue := r.observe(ctx, nn, now)
	wasReady := meta.IsStatusConditionTrue(original.Status.Conditions, cortexv1.NeuronNodeConditionReady)
	cond.ObservedGeneration = nn.Generation
	meta.SetStatusCondition(&nn.Status.Conditions, cond)
	nn.Status.Ready = string(cond.Status)
	nn.Status.ObservedGeneration = nn.Generation

	if ready := cond.Status == metav1.ConditionTrue; ready != wasReady {
		logger.Info("Node readiness changed", "ready", ready, "reason", cond.Reason, "message", cond.Message)
		// Every Model with a replica here must drop it from (or add it to)
		// its ready set at once; and a node that turns Ready is room for
		// the Models that still want a replica without a node. Only those
		// are woken: waking every Model of a large fleet would queue the
		// ones that matter behind a thousand passes.
		if ready {
			var models cortexv1.ModelList
			if err := r.List(ctx, &models, client.UnsafeDisableDeepCopy); err == nil {
				var keys []string
				for i := range models.Items {
					m := &models.Items[i]
					if meta.IsStatusConditionFalse(m.Status.Conditions, cortexv1.ModelConditionScheduled) ||
						m.Status.Phase == cortexv1.ModelPhasePending || m.Status.Phase == "" {
						keys = append(keys, m.Key())
					}
				}
				r.Notify(keys...)
			}
		}
		if o, ok := r.Fleet.Get(nn.Name); ok {
			keys := make([]string, 0, len(o.Models))
			for _, m := range o.Models {
				keys = append(keys, m.Name)
			}
			r.Notify(keys...)
		}
	}
	if !equality.Semantic.DeepEqual(original.Status, nn.Status) {
		if err := r.Status().Patch(ctx, nn, client.MergeFromWithOptions(original, client.MergeFromWithOptimisticLock{})); err != nil {
			if apierrors.IsConflict(err) {
				return ctrl.Result{RequeueAfter: 100 * time.Millisecond}, nil
			}
			// Tried again at the next poll, not after the error backoff:
			// while the API server is away the polls must keep their
			// cadence, since a recent answer is what keeps a node with a
			// late heartbeat ready for the Model reconciler.
			logger.Error(err, "Patching NeuronNode status failed; trying again at the next poll")
			r.Metrics.ObserveReconcileError(ControllerNeuronNode)
			return ctrl.Result{RequeueAfter: requeue}, nil
		}
	}
	return ctrl.Result{RequeueAfter: requeue}, nil
}

// observe polls the neuron when its heartbeat is fresh and returns the
// Ready condition and when to look again.
func (r *NeuronNodeReconciler) observe(ctx context.Context, nn *cortexv1.NeuronNode, now time.Time) (metav1.Condition, time.Duration) {
	notReady := func(reason, msg string) metav1.Condition {
		return metav1.Condition{Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionFalse, Reason: reason, Message: msg}
	}
	hb := nn.Status.LastHeartbeatTime
	if hb == nil {
		return notReady(cortexv1.ReasonNoHeartbeat, "the neuron has not reported yet"), r.PollInterval
	}
	age := r.Fleet.HeartbeatAge(nn.Name, hb.Time, now)
	// A late heartbeat with a neuron that answered the last poll is
	// polled once more: if it answers, the node stays Ready.
	// One that did not answer, or was never polled, is not polled again
	// until it heartbeats, so a hung neuron costs one bounded poll.
	late := age > r.StaleAfter
	if late && !r.Fleet.Answering(nn.Name, now, r.StaleAfter) {
		return notReady(cortexv1.ReasonHeartbeatStale,
			fmt.Sprintf("last heartbeat %s ago, more than %s", age.Round(time.Second), r.StaleAfter)), r.PollInterval
	}
	// Look again no later than when this heartbeat goes stale.
	requeue := r.PollInterval
	if !late {
		requeue = min(r.PollInterval, r.StaleAfter-age+50*time.Millisecond)
	}
	if nn.Status.Endpoint == "" {
		return notReady(cortexv1.ReasonUnreachable, "the neuron reported no endpoint"), requeue
	}
	pctx, cancel := context.WithTimeout(ctx, pollBound(r.StaleAfter, age))
	resp, err := r.Neurons.Models(pctx, nn.Status.Endpoint)
	cancel()
	if err != nil {
		r.Fleet.SetError(nn.Name, nn.Status.Endpoint, err)
		return notReady(cortexv1.ReasonUnreachable, truncate(err.Error(), 512)), requeue
	}
	changed := r.Fleet.Set(nn.Name, Observation{Endpoint: nn.Status.Endpoint, At: now, Models: resp.Models, Devices: resp.Devices})
	requeue = nextPoll(resp.Models, requeue, r.LoadingPollInterval)
	// Woken Models re-plan; a woken name with no Model sweeps orphans
	// (ModelReconciler.sweepOrphans), so the planner decides those too. A
	// model the node holds that no Model describes is woken on every poll
	// until it is gone: it may be left from before the node was unreachable,
	// when no residency change is seen.
	r.Notify(append(changed, r.orphans(ctx, resp.Models)...)...)
	if late {
		return metav1.Condition{
			Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatLate,
			Message: "heartbeat late, but the neuron API answers the manager",
		}, requeue
	}
	return metav1.Condition{
		Type: cortexv1.NeuronNodeConditionReady, Status: metav1.ConditionTrue, Reason: cortexv1.ReasonHeartbeatFresh,
		// No ages or counters here: the message must stay put between polls
		// so an unchanged node costs no status write.
		Message: "heartbeat fresh and the neuron API answers",
	}, requeue
}

// pollBound is how long one poll of a neuron may take, all its attempts
// together. A neuron that hangs (SIGSTOP, a wedged process, a host that
// stops answering but keeps its TCP stack) also stops heartbeating, so the
// time left before its heartbeat goes stale is the most a poll needs: past
// that the node turns NotReady on the heartbeat alone. Without the bound a
// hung neuron held the reconcile for every attempt of the client's timeout
// (3 × 10 s), and its Models stayed routable to it for half a minute
// instead of about one staleness. The floor of half the staleness keeps a
// neuron whose heartbeat is merely late from being called unreachable by a
// poll that had no time to answer.
func pollBound(staleAfter, age time.Duration) time.Duration {
	return max(staleAfter-age, staleAfter/2)
}

// DefaultLoadingPollInterval is LoadingPollInterval's default. A replica
// becomes routable only when a poll finds it Ready (the Model's status
// then lists it), so while a load is under way the poll interval is added
// to every cold start: at 5 s it made cold requests for large models miss
// a 10 s time to first token that the load alone would meet. The fleet
// simulator measured the fewest GPUs for 99 % SLO attainment fall from 45
// to 18 on its day of traffic (docs/fleet.md).
const DefaultLoadingPollInterval = time.Second

// nextPoll is when to poll a neuron again: within the loading interval
// while it reports a model Loading, else after requeue.
func nextPoll(models []neuronapi.ModelStatus, requeue, loading time.Duration) time.Duration {
	if loading <= 0 {
		loading = DefaultLoadingPollInterval
	}
	for _, m := range models {
		if m.State == neuronapi.StateLoading {
			return min(requeue, loading)
		}
	}
	return requeue
}

// orphans returns the names of models no Model in the cache describes.
func (r *NeuronNodeReconciler) orphans(ctx context.Context, models []neuronapi.ModelStatus) []string {
	var out []string
	for _, m := range models {
		ns, name, ok := cortexv1.ParseModelKey(m.Name)
		if !ok {
			continue
		}
		var model cortexv1.Model
		if err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, &model); apierrors.IsNotFound(err) {
			out = append(out, m.Name)
		}
	}
	return out
}

// SetupWithManager registers the controller.
func (r *NeuronNodeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&cortexv1.NeuronNode{}).
		WithOptions(controller.Options{MaxConcurrentReconciles: 4}).
		Named("neuronnode").
		Complete(r)
}
