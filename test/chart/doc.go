// Package chart tests what cortex ships: the Helm chart in charts/cortex,
// the kustomize bases in config/, the sample Models, the Grafana dashboard
// and the Dockerfiles.
//
// The tests render the chart with a real helm (hack/helm.sh finds one or
// builds it from the Go module proxy) and apply what it renders, the
// kustomize bases and the samples with `kubectl apply --dry-run=server` to a
// real kube-apiserver (internal/testenv). Without helm or the API server
// binaries they fail rather than skip.
package chart
