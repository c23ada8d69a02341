package cortexcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	cortexv1 "github.com/helexa-ai/cortex/api/v1alpha1"
	"github.com/helexa-ai/cortex/internal/fleet"
	"github.com/helexa-ai/cortex/internal/gateway"
)

// source produces a fleet report.
type source interface {
	Report(ctx context.Context) (fleet.Report, error)
	// Scope says where reports come from, for people.
	Scope() string
}

// clusterSource lists Models and NeuronNodes from the API server and
// evaluates them with the gateway's rules.
type clusterSource struct {
	c         client.Client
	namespace string // "" = all
}

// newClusterSource resolves the kubeconfig as kubectl does: --kubeconfig,
// else $KUBECONFIG, else ~/.kube/config, else the in-cluster account; the
// namespace is --namespace, else the context's, else "default".
func newClusterSource(cfg StatusConfig) (*clusterSource, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = cfg.Kubeconfig
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: cfg.Context})
	restCfg, err := cc.ClientConfig()
	if err != nil {
		if clientcmd.IsEmptyConfig(err) {
			return nil, errors.New("no cluster access: no kubeconfig found (set --kubeconfig or $KUBECONFIG), or ask a gateway with --endpoint")
		}
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	ns := ""
	if !cfg.AllNamespaces {
		if ns = cfg.Namespace; ns == "" {
			if ns, _, err = cc.Namespace(); err != nil {
				return nil, fmt.Errorf("reading the context's namespace: %w", err)
			}
		}
	}
	return clusterSourceFor(restCfg, ns, cfg.RequestTimeout)
}

func clusterSourceFor(restCfg *rest.Config, namespace string, timeout time.Duration) (*clusterSource, error) {
	restCfg = rest.CopyConfig(restCfg)
	restCfg.Timeout = timeout
	restCfg.UserAgent = "cortex-status"
	scheme := runtime.NewScheme()
	if err := cortexv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		return nil, fmt.Errorf("creating a client for %s: %w", restCfg.Host, err)
	}
	return &clusterSource{c: c, namespace: namespace}, nil
}

func (s *clusterSource) Scope() string {
	if s.namespace == "" {
		return "all namespaces"
	}
	return "namespace " + s.namespace
}

func (s *clusterSource) Report(ctx context.Context) (fleet.Report, error) {
	var models cortexv1.ModelList
	var opts []client.ListOption
	if s.namespace != "" {
		opts = append(opts, client.InNamespace(s.namespace))
	}
	if err := s.c.List(ctx, &models, opts...); err != nil {
		return fleet.Report{}, fmt.Errorf("listing Models: %w", explainListError(err))
	}
	var nodes cortexv1.NeuronNodeList
	if err := s.c.List(ctx, &nodes); err != nil {
		return fleet.Report{}, fmt.Errorf("listing NeuronNodes: %w", explainListError(err))
	}
	return gateway.Evaluate(models.Items, nodes.Items), nil
}

func explainListError(err error) error {
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("%w (are the cortex CRDs installed in this cluster?)", err)
	}
	return err
}

// endpointSource asks a gateway's GET /health.
type endpointSource struct {
	url    string
	apiKey string
	http   *http.Client
}

// newEndpointSource accepts the gateway's base URL with or without the
// /v1 that OpenAI clients are given.
func newEndpointSource(endpoint, apiKey string, timeout time.Duration) (*endpointSource, error) {
	u, err := url.Parse(endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--endpoint %q is not an http:// or https:// URL", endpoint)
	}
	u.Path = strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v1") + "/health"
	u.RawQuery, u.Fragment = "", ""
	return &endpointSource{url: u.String(), apiKey: apiKey, http: &http.Client{Timeout: timeout}}, nil
}

func (s *endpointSource) Scope() string {
	return "gateway " + strings.TrimSuffix(s.url, "/health")
}

func (s *endpointSource) Report(ctx context.Context) (fleet.Report, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return fleet.Report{}, err
	}
	if s.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+s.apiKey)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := s.http.Do(req)
	if err != nil {
		return fleet.Report{}, fmt.Errorf("asking the gateway: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return fleet.Report{}, fmt.Errorf("reading the gateway's answer: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return fleet.Report{}, fmt.Errorf("the gateway refused the API key (401 from %s): set --api-key or $%s", s.url, envAPIKey)
	case resp.StatusCode == http.StatusNotFound:
		return fleet.Report{}, fmt.Errorf("%s answered 404: is this a cortex gateway (one with /health)?", s.url)
	case resp.StatusCode != http.StatusOK:
		return fleet.Report{}, fmt.Errorf("%s answered %s: %s", s.url, resp.Status, errorMessage(body))
	}
	var r fleet.Report
	if err := json.Unmarshal(body, &r); err != nil || r.Status == "" {
		return fleet.Report{}, fmt.Errorf("%s did not answer a fleet report: %s", s.url, errorMessage(body))
	}
	return r, nil
}

// errorMessage pulls the message out of an OpenAI error envelope, or
// shows the start of whatever else came.
func errorMessage(body []byte) string {
	var env struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &env) == nil && env.Error.Message != "" {
		return env.Error.Message
	}
	return cut(strings.TrimSpace(string(body)), 200)
}
