package neuron

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/devices"
	"github.com/helexa-ai/cortex/internal/neuronapi"
	"github.com/helexa-ai/cortex/internal/units"
)

// The neuron creates its own NeuronNode, patches its labels, and writes the
// neuron-owned part of its status; it reads nothing else in the cluster.
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=neuronnodes,verbs=get;create;patch
// +kubebuilder:rbac:groups=cortex.helexa.ai,resources=neuronnodes/status,verbs=get;patch

// registrar keeps the host's NeuronNode: it creates it with the neuron's
// labels and writes the neuron-owned part of its status every heartbeat
// and right after a model changes state. It never writes conditions or
// status.ready, which the manager owns.
type registrar struct {
	s        *Server
	log      logr.Logger
	c        client.Client // nil: registration disabled
	name     string
	endpoint string
	every    time.Duration
	kick     chan struct{}
	// finalWritten records that the shutdown write succeeded (tests).
	finalWritten atomic.Bool
}

func newRegistrar(ctx context.Context, s *Server, cfg Config) (*registrar, error) {
	r := &registrar{s: s, log: s.log.WithName("registration"), name: cfg.NodeName, every: cfg.HeartbeatInterval, kick: make(chan struct{}, 1)}
	r.endpoint = advertisedEndpoint(cfg, s.ln.Addr())
	if cfg.DisableRegistration {
		r.log.Info("Registration disabled")
		return r, nil
	}
	restCfg := cfg.RESTConfig
	if restCfg == nil {
		var err error
		switch {
		case cfg.Kubeconfig != "":
			if restCfg, err = clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig); err != nil {
				return nil, fmt.Errorf("loading kubeconfig %s: %w", cfg.Kubeconfig, err)
			}
		case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
			if restCfg, err = rest.InClusterConfig(); err != nil {
				return nil, fmt.Errorf("loading in-cluster configuration: %w", err)
			}
		default:
			r.log.Info("No cluster access (no kubeconfig, not in a pod); registration disabled")
			return r, nil
		}
	}
	scheme := runtime.NewScheme()
	if err := cortexv1.AddToScheme(scheme); err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating Kubernetes client: %w", err)
	}
	r.c = c
	return r, nil
}

// advertisedEndpoint is the URL the cluster reaches this neuron on.
func advertisedEndpoint(cfg Config, addr net.Addr) string {
	if cfg.AdvertiseURL != "" {
		return strings.TrimRight(cfg.AdvertiseURL, "/")
	}
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if cfg.PodIP != "" {
		host = cfg.PodIP
	} else if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		if h, err := os.Hostname(); err == nil {
			host = h
		}
	}
	return "http://" + net.JoinHostPort(host, port)
}

// trigger asks for a heartbeat now (a model changed state); it never
// blocks.
func (r *registrar) trigger() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

func (r *registrar) run(ctx context.Context) {
	if r.c == nil {
		return
	}
	t := time.NewTicker(r.every)
	defer t.Stop()
	for {
		if err := r.beat(ctx); err != nil && ctx.Err() == nil {
			r.log.Error(err, "Writing NeuronNode status failed; retrying next heartbeat", "node", r.name)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.kick:
		}
	}
}

// final writes one last status at shutdown, when every model is gone, so
// the manager learns it at once rather than from a stale heartbeat.
func (r *registrar) final() {
	if r.c == nil {
		return
	}
	ctx, cancel := context.WithTimeout(logr.NewContext(context.Background(), r.log), 5*time.Second)
	defer cancel()
	if err := r.beat(ctx); err != nil {
		r.log.Error(err, "Writing the final NeuronNode status failed", "node", r.name)
		return
	}
	r.finalWritten.Store(true)
}

// beat writes the status, creating the NeuronNode when it is missing.
func (r *registrar) beat(ctx context.Context) error {
	snap, err := r.s.reg.snapshot(ctx)
	if err != nil {
		return err
	}
	patch, err := json.Marshal(map[string]any{"status": r.status(snap, time.Now())})
	if err != nil {
		return fmt.Errorf("encoding status: %w", err)
	}
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: r.name}}
	err = r.c.Status().Patch(ctx, nn, client.RawPatch(types.MergePatchType, patch))
	if apierrors.IsNotFound(err) {
		if err := r.ensure(ctx, snap.Devices); err != nil {
			return err
		}
		err = r.c.Status().Patch(ctx, nn, client.RawPatch(types.MergePatchType, patch))
	} else if err == nil {
		err = r.ensureLabels(ctx, nn, snap.Devices)
	}
	if err != nil {
		return fmt.Errorf("patching NeuronNode %s status: %w", r.name, err)
	}
	return nil
}

// ensure creates the NeuronNode with the neuron's labels.
func (r *registrar) ensure(ctx context.Context, devs []neuronapi.Device) error {
	nn := &cortexv1.NeuronNode{ObjectMeta: metav1.ObjectMeta{Name: r.name, Labels: labelsFor(r.name, devs)}}
	if err := r.c.Create(ctx, nn); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating NeuronNode %s: %w", r.name, err)
	}
	r.log.Info("Registered NeuronNode", "node", r.name, "endpoint", r.endpoint)
	return nil
}

// ensureLabels sets the neuron's labels when they differ, leaving every
// other label alone.
func (r *registrar) ensureLabels(ctx context.Context, nn *cortexv1.NeuronNode, devs []neuronapi.Device) error {
	want := labelsFor(r.name, devs)
	stale := false
	for k, v := range want {
		if nn.Labels[k] != v {
			stale = true
		}
	}
	if !stale {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": want}})
	if err != nil {
		return err
	}
	if err := r.c.Patch(ctx, nn, client.RawPatch(types.MergePatchType, patch)); err != nil {
		return fmt.Errorf("labeling NeuronNode %s: %w", r.name, err)
	}
	return nil
}

// status is the neuron-owned part of the NeuronNode status.
func (r *registrar) status(snap neuronapi.ModelsResponse, now time.Time) map[string]any {
	gpus := make([]cortexv1.GPU, 0, len(snap.Devices))
	var free, total int64
	gpuCount := 0
	for _, d := range snap.Devices {
		if d.Kind != devices.KindCPU {
			gpuCount++
		}
		free += d.MemoryFree
		total += d.MemoryTotal
		gpus = append(gpus, cortexv1.GPU{
			Index: int32(d.Index), Kind: cortexv1.DeviceKind(d.Kind), UUID: d.UUID, Name: truncate(d.Name, 128),
			MemoryTotalBytes: d.MemoryTotal, MemoryFreeBytes: d.MemoryFree,
			ComputeCapability: truncate(d.ComputeCapability, 16), UtilizationPercent: int32(d.Utilization),
		})
	}
	models := make([]cortexv1.ResidentModel, 0, len(snap.Models))
	for _, m := range snap.Models {
		rm := cortexv1.ResidentModel{Name: m.Name, State: m.State.Replica(), VRAMBytes: m.VRAMBytes, InFlight: int32(m.InFlight)}
		for _, d := range m.Devices {
			rm.Devices = append(rm.Devices, int32(d))
		}
		if m.LastUsed != nil {
			t := metav1.NewTime(*m.LastUsed)
			rm.LastUsedTime = &t
		}
		models = append(models, rm)
	}
	if len(models) > 128 {
		models = models[:128] // the CRD's bound; the rest are still served
	}
	return map[string]any{
		"endpoint":          r.endpoint,
		"nodeName":          r.name,
		"gpus":              gpus,
		"models":            models,
		"lastHeartbeatTime": metav1.NewTime(now),
		"engine":            cortexv1.EngineInfo{Version: truncate(r.s.cfg.Engine.Version(), 128), Backends: r.s.cfg.Engine.Backends()},
		"gpuCount":          gpuCount,
		"modelCount":        len(snap.Models),
		"vram":              units.FreeOfTotal(free, total),
	}
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// labelValue makes s a valid label value: at most 63 characters of
// [A-Za-z0-9._-], starting and ending alphanumeric.
func labelValue(s string) string {
	s = labelUnsafe.ReplaceAllString(strings.TrimSpace(s), "-")
	if len(s) > 63 {
		s = s[:63]
	}
	return strings.Trim(s, "._-")
}

func labelsFor(node string, devs []neuronapi.Device) map[string]string {
	product, count := "cpu", 0
	for _, d := range devs {
		if d.Kind == devices.KindCPU {
			continue
		}
		if count == 0 && d.Name != "" {
			product = d.Name
		}
		count++
	}
	return map[string]string{
		cortexv1.LabelHostname:   labelValue(node),
		cortexv1.LabelGPUProduct: labelValue(product),
		cortexv1.LabelGPUCount:   strconv.Itoa(count),
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
