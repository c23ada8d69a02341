package chart

import (
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
)

func TestLint(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			args := append([]string{"lint", "--strict", chartDir, "--namespace", namespace}, vs.args()...)
			if out, err := run(helm(t), args...); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestRenderInvariants checks what must hold for every value set.
func TestRenderInvariants(t *testing.T) {
	for _, vs := range valueSets {
		t.Run(vs.name, func(t *testing.T) {
			_, objs := render(t, vs)
			checkRBAC(t, objs)
			checkContainers(t, objs)
			checkSelectors(t, objs)
			checkNamespaces(t, objs)
		})
	}
}

// checkRBAC: no wildcard anywhere, and the manager's Leases only in its
// namespace.
func checkRBAC(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	check := func(kind, name string, rules []rbacv1.PolicyRule) {
		if len(rules) == 0 {
			t.Errorf("%s %s has no rules", kind, name)
		}
		for _, r := range rules {
			for _, list := range [][]string{r.Verbs, r.Resources, r.APIGroups, r.ResourceNames, r.NonResourceURLs} {
				if slices.Contains(list, "*") {
					t.Errorf("%s %s has a wildcard rule: %+v", kind, name, r)
				}
			}
		}
	}
	for _, o := range find(objs, "ClusterRole") {
		cr := typed[rbacv1.ClusterRole](t, o)
		check("ClusterRole", cr.Name, cr.Rules)
		for _, r := range cr.Rules {
			if slices.Contains(r.Resources, "leases") {
				t.Errorf("ClusterRole %s grants Leases cluster-wide: %+v", cr.Name, r)
			}
		}
	}
	for _, o := range find(objs, "Role") {
		r := typed[rbacv1.Role](t, o)
		check("Role", r.Name, r.Rules)
	}
}

// checkContainers: every container non-root (but the one init container
// that fixes the model cache's owner), read-only, without capabilities,
// with resource requests.
func checkContainers(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	for name, tpl := range podTemplates(t, objs) {
		spec := tpl.Spec
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot {
			t.Errorf("%s: pod securityContext.runAsNonRoot is not true", name)
		}
		if psc == nil || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("%s: pod seccompProfile is not RuntimeDefault", name)
		}
		if spec.HostNetwork || spec.HostPID || spec.HostIPC {
			t.Errorf("%s: uses a host namespace", name)
		}
		if spec.ServiceAccountName == "" || spec.ServiceAccountName == "default" {
			t.Errorf("%s: runs as the default ServiceAccount", name)
		}
		all := append(slices.Clone(spec.InitContainers), spec.Containers...)
		for _, c := range all {
			where := fmt.Sprintf("%s container %s", name, c.Name)
			sc := c.SecurityContext
			if sc == nil {
				t.Errorf("%s: no securityContext", where)
				continue
			}
			if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
				t.Errorf("%s: root filesystem is writable", where)
			}
			if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allows privilege escalation", where)
			}
			if sc.Privileged != nil && *sc.Privileged {
				t.Errorf("%s: privileged", where)
			}
			if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
				t.Errorf("%s: does not drop ALL capabilities", where)
			}
			if c.Name == "cache-permissions" {
				// Root, but able to do nothing except chown.
				if sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Add, []corev1.Capability{"CHOWN"}) {
					t.Errorf("%s: must add exactly CHOWN, has %+v", where, sc.Capabilities)
				}
			} else {
				if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
					t.Errorf("%s: not explicitly non-root", where)
				}
				if sc.Capabilities != nil && len(sc.Capabilities.Add) > 0 {
					t.Errorf("%s: adds capabilities %v", where, sc.Capabilities.Add)
				}
			}
			for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
				if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
					t.Errorf("%s: no %s request", where, r)
				}
			}
		}
	}
}

// checkSelectors: every selector in the chart selects what it is meant to.
func checkSelectors(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	templates := map[string]labels.Set{} // component -> pod labels
	for _, o := range find(objs, "Deployment") {
		d := typed[appsv1.Deployment](t, o)
		matchSelector(t, "Deployment "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		templates[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d.Spec.Template.Labels
	}
	for _, o := range find(objs, "DaemonSet") {
		d := typed[appsv1.DaemonSet](t, o)
		matchSelector(t, "DaemonSet "+d.Name, d.Spec.Selector, d.Spec.Template.Labels)
		templates[d.Spec.Template.Labels["app.kubernetes.io/component"]] = d.Spec.Template.Labels
	}
	services := map[string]*corev1.Service{}
	for _, o := range find(objs, "Service") {
		s := typed[corev1.Service](t, o)
		services[s.Name] = s
		sel := labels.SelectorFromSet(s.Spec.Selector)
		matched := false
		for _, l := range templates {
			matched = matched || sel.Matches(l)
		}
		if len(s.Spec.Selector) == 0 || !matched {
			t.Errorf("Service %s selects no pods (%v)", s.Name, s.Spec.Selector)
		}
	}
	for _, o := range find(objs, "PodDisruptionBudget") {
		p := typed[policyv1.PodDisruptionBudget](t, o)
		matchSelector(t, "PodDisruptionBudget "+p.Name, p.Spec.Selector, templates["gateway"])
	}
	for _, o := range find(objs, "NetworkPolicy") {
		np := typed[networkingv1.NetworkPolicy](t, o)
		matchSelector(t, "NetworkPolicy "+np.Name, &np.Spec.PodSelector, templates["neuron"])
		from := np.Spec.Ingress[0].From
		for i, component := range []string{"manager", "gateway"} {
			matchSelector(t, "NetworkPolicy "+np.Name+" peer "+component, from[i].PodSelector, templates[component])
		}
	}
	for _, o := range find(objs, "ServiceMonitor") {
		sel, _, _ := unstructured.NestedStringMap(o.Object, "spec", "selector", "matchLabels")
		eps, _, _ := unstructured.NestedSlice(o.Object, "spec", "endpoints")
		var hit *corev1.Service
		for _, s := range services {
			if labels.SelectorFromSet(sel).Matches(labels.Set(s.Labels)) {
				if hit != nil {
					t.Errorf("ServiceMonitor %s selects Services %s and %s", o.GetName(), hit.Name, s.Name)
				}
				hit = s
			}
		}
		if hit == nil {
			t.Errorf("ServiceMonitor %s selects no Service", o.GetName())
			continue
		}
		for _, ep := range eps {
			port := ep.(map[string]any)["port"]
			if !slices.ContainsFunc(hit.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == port }) {
				t.Errorf("ServiceMonitor %s scrapes port %v, which Service %s does not have", o.GetName(), port, hit.Name)
			}
		}
	}
}

func matchSelector(t *testing.T, what string, sel *metav1.LabelSelector, podLabels labels.Set) {
	t.Helper()
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return
	}
	if s.Empty() || !s.Matches(podLabels) {
		t.Errorf("%s: selector %v does not match pod labels %v", what, s, podLabels)
	}
}

// checkNamespaces: namespaced objects go into the release namespace.
func checkNamespaces(t *testing.T, objs []*unstructured.Unstructured) {
	t.Helper()
	clusterScoped := map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true}
	for _, o := range objs {
		if clusterScoped[o.GetKind()] {
			if o.GetNamespace() != "" {
				t.Errorf("%s %s has a namespace", o.GetKind(), o.GetName())
			}
			continue
		}
		if o.GetNamespace() != namespace {
			t.Errorf("%s %s is in namespace %q, not the release's", o.GetKind(), o.GetName(), o.GetNamespace())
		}
	}
}

// container returns a workload's container by name.
func container(t *testing.T, tpl corev1.PodTemplateSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range tpl.Spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func kinds(objs []*unstructured.Unstructured) map[string]int {
	n := map[string]int{}
	for _, o := range objs {
		n[o.GetKind()]++
	}
	return n
}

func TestDefaults(t *testing.T) {
	_, objs := render(t, valueSet{name: "defaults"})
	want := map[string]int{
		"ServiceAccount": 3, "ClusterRole": 3, "ClusterRoleBinding": 3, "Role": 1, "RoleBinding": 1,
		"Secret": 2, "Deployment": 2, "DaemonSet": 1, "Service": 4, "PodDisruptionBudget": 1, "NetworkPolicy": 1,
	}
	if got := kinds(objs); !maps.Equal(got, want) {
		t.Errorf("rendered kinds %v, want %v", got, want)
	}

	tpls := podTemplates(t, objs)
	neuron := tpls["DaemonSet/cortex-neuron"]
	c := container(t, neuron, "neuron")
	for _, want := range []string{"--addr=:13131", "--node-name=$(NODE_NAME)", "--pod-ip=$(POD_IP)",
		"--token-file=/etc/cortex/neuron-token/token", "--cache-dir=/var/lib/cortex/models", "--heartbeat-interval=10s"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("neuron args %v lack %s", c.Args, want)
		}
	}
	fieldRefs := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			fieldRefs[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if fieldRefs["NODE_NAME"] != "spec.nodeName" || fieldRefs["POD_IP"] != "status.podIP" {
		t.Errorf("neuron downward-API env = %v, want NODE_NAME=spec.nodeName, POD_IP=status.podIP", fieldRefs)
	}
	if c.Image != "ghcr.io/helexa-ai/cortex-neuron:0.1.0-cuda" {
		t.Errorf("neuron image %s", c.Image)
	}
	if neuron.Spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("GPU neuron nodeSelector %v", neuron.Spec.NodeSelector)
	}
	if !slices.ContainsFunc(neuron.Spec.Tolerations, func(tl corev1.Toleration) bool { return tl.Key == "nvidia.com/gpu" }) {
		t.Errorf("GPU neuron does not tolerate nvidia.com/gpu: %v", neuron.Spec.Tolerations)
	}
	if neuron.Spec.RuntimeClassName != nil {
		t.Errorf("runtimeClassName set by default: %s", *neuron.Spec.RuntimeClassName)
	}
	if _, ok := c.Resources.Limits["nvidia.com/gpu"]; ok {
		t.Errorf("GPU requested by default: %v", c.Resources.Limits)
	}
	hostPath := false
	for _, v := range neuron.Spec.Volumes {
		hostPath = hostPath || (v.HostPath != nil && v.HostPath.Path == "/var/lib/cortex/models")
	}
	if !hostPath {
		t.Errorf("no hostPath model cache in %v", neuron.Spec.Volumes)
	}
	for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Fatal("neuron probes missing")
		}
	}
	if c.ReadinessProbe.HTTPGet.Path != "/readyz" || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("neuron probes %s / %s", c.ReadinessProbe.HTTPGet.Path, c.LivenessProbe.HTTPGet.Path)
	}

	mgr := container(t, tpls["Deployment/cortex-manager"], "manager")
	for _, want := range []string{"--leader-elect=true", "--leader-election-namespace=" + namespace, "--health-probe-bind-address=:8081", "--metrics-bind-address=:8080"} {
		if !slices.Contains(mgr.Args, want) {
			t.Errorf("manager args %v lack %s", mgr.Args, want)
		}
	}
	if mgr.ReadinessProbe.HTTPGet.Path != "/readyz" || mgr.ReadinessProbe.HTTPGet.Port.String() != "probes" ||
		mgr.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("manager probes %+v %+v", mgr.ReadinessProbe.HTTPGet, mgr.LivenessProbe.HTTPGet)
	}

	svc := typed[corev1.Service](t, get(t, objs, "Service", "cortex-gateway"))
	ports := map[string][2]int32{}
	for _, p := range svc.Spec.Ports {
		ports[p.Name] = [2]int32{p.Port, int32(p.TargetPort.IntValue())}
	}
	gw := container(t, tpls["Deployment/cortex-gateway"], "gateway")
	containerPorts := map[string]int32{}
	for _, p := range gw.Ports {
		containerPorts[p.Name] = p.ContainerPort
	}
	if ports["http"][0] != 80 || containerPorts["http"] != 8080 || ports["metrics"][0] != 9090 || containerPorts["metrics"] != 9090 {
		t.Errorf("gateway Service ports %v, container ports %v; want 80->8080 and 9090", ports, containerPorts)
	}
	// Two replicas share the prompt prefixes they route, over a headless
	// Service of every replica, ready or not; the API Service does not
	// carry that port.
	peers := typed[corev1.Service](t, get(t, objs, "Service", "cortex-gateway-peers"))
	if peers.Spec.ClusterIP != corev1.ClusterIPNone || !peers.Spec.PublishNotReadyAddresses ||
		len(peers.Spec.Ports) != 1 || peers.Spec.Ports[0].Port != 8081 || peers.Spec.Ports[0].TargetPort.String() != "peer" || containerPorts["peer"] != 8081 {
		t.Errorf("gateway peers Service %+v, container ports %v; want headless, not-ready addresses published, 8081 -> peer", peers.Spec, containerPorts)
	}
	if _, ok := ports["peer"]; ok {
		t.Errorf("the API Service exposes the peer port: %v", ports)
	}
	for _, want := range []string{"--peer-addr=:8081", "--peers=cortex-gateway-peers:8081"} {
		if !slices.Contains(gw.Args, want) {
			t.Errorf("gateway args %v lack %s", gw.Args, want)
		}
	}

	// The generated API key is usable by an SDK and survives in a
	// name:key line.
	keys := secretData(t, get(t, objs, "Secret", "cortex-api-keys"), "api-keys")
	if !strings.Contains(keys, "\ndefault:sk-cortex-") {
		t.Errorf("generated API keys file %q", keys)
	}
	if tok := secretData(t, get(t, objs, "Secret", "cortex-neuron-token"), "token"); len(tok) < 32 {
		t.Errorf("generated neuron token %q is short", tok)
	}
}

func secretData(t *testing.T, o *unstructured.Unstructured, key string) string {
	t.Helper()
	raw, ok, _ := unstructured.NestedString(o.Object, "data", key)
	if !ok {
		t.Fatalf("Secret %s has no key %s", o.GetName(), key)
	}
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatalf("Secret %s key %s: %v", o.GetName(), key, err)
	}
	return string(b)
}

func TestEverythingOn(t *testing.T) {
	_, objs := render(t, valueSet{name: "everything", files: []string{"everything.yaml"}})
	for kind, n := range map[string]int{"Ingress": 1, "HorizontalPodAutoscaler": 1, "ServiceMonitor": 3, "NetworkPolicy": 1, "ConfigMap": 1, "PodDisruptionBudget": 1} {
		if got := len(find(objs, kind)); got != n {
			t.Errorf("%d %s rendered, want %d", got, kind, n)
		}
	}
	tpls := podTemplates(t, objs)
	gwd := typed[appsv1.Deployment](t, get(t, objs, "Deployment", "cortex-gateway"))
	if gwd.Spec.Replicas != nil {
		t.Errorf("gateway Deployment sets replicas (%d) although the HPA owns them", *gwd.Spec.Replicas)
	}
	if mgr := container(t, tpls["Deployment/cortex-manager"], "manager"); !slices.Contains(mgr.Args, "--cold-start-worth=0.5") {
		t.Errorf("manager args %v lack --cold-start-worth=0.5", mgr.Args)
	}
	gw := container(t, tpls["Deployment/cortex-gateway"], "gateway")
	for _, want := range []string{"--namespace=llm", "--cold-start-timeout=15m", "--max-body-bytes=67108864", "--max-attempts=5", "--prefix-imbalance=0.3", "--zap-encoder=console", "--peer-addr=:8090", "--peer-sync-interval=250ms", "--peers=cortex-gateway-peers:8090"} {
		if !slices.Contains(gw.Args, want) {
			t.Errorf("gateway args %v lack %s", gw.Args, want)
		}
	}
	if gw.Image != "registry.example.com/cortex/cortex-gateway:v9.9.9" {
		t.Errorf("gateway image %s", gw.Image)
	}
	keys := secretData(t, get(t, objs, "Secret", "cortex-api-keys"), "api-keys")
	if !strings.Contains(keys, "\nalice:sk-alice-0123456789\n") || strings.Contains(keys, "default:") {
		t.Errorf("API keys file %q", keys)
	}

	neuron := tpls["DaemonSet/cortex-neuron"]
	if neuron.Spec.RuntimeClassName == nil || *neuron.Spec.RuntimeClassName != "nvidia" {
		t.Errorf("runtimeClassName %v", neuron.Spec.RuntimeClassName)
	}
	c := container(t, neuron, "neuron")
	if q := c.Resources.Limits["nvidia.com/gpu"]; q.Value() != 2 {
		t.Errorf("GPU limit %v, want 2", c.Resources.Limits)
	}
	if q := c.Resources.Limits[corev1.ResourceMemory]; q.String() != "64Gi" {
		t.Errorf("memory limit lost when adding the GPU: %v", c.Resources.Limits)
	}
	if !strings.HasSuffix(c.Image, ":v9.9.9-cuda") {
		t.Errorf("neuron image %s", c.Image)
	}
	if neuron.Spec.NodeSelector["node-pool"] != "gpu-h100" || neuron.Spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("nodeSelector %v", neuron.Spec.NodeSelector)
	}
	env := map[string]corev1.EnvVar{}
	for _, e := range c.Env {
		env[e.Name] = e
	}
	if e := env["HF_TOKEN"]; e.ValueFrom == nil || e.ValueFrom.SecretKeyRef == nil || e.ValueFrom.SecretKeyRef.Name != "hf-token" ||
		e.ValueFrom.SecretKeyRef.Optional == nil || !*e.ValueFrom.SecretKeyRef.Optional {
		t.Errorf("HF_TOKEN %+v, want an optional reference to Secret hf-token", e)
	}
	if env["HF_ENDPOINT"].Value != "https://hf-mirror.example.com" {
		t.Errorf("HF_ENDPOINT %+v", env["HF_ENDPOINT"])
	}
	if _, ok := env["NVIDIA_VISIBLE_DEVICES"]; ok {
		t.Errorf("NVIDIA_VISIBLE_DEVICES set although GPUs are requested from the device plugin")
	}

	// A new neuron token restarts nothing: every component re-reads it
	// (and a restarted neuron would lose its loaded models).
	for name, tpl := range tpls {
		if _, ok := tpl.Annotations["checksum/neuron-token"]; ok {
			t.Errorf("%s restarts when the neuron token changes", name)
		}
	}
	sm := get(t, objs, "ServiceMonitor", "cortex-neuron")
	if sm.GetLabels()["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v", sm.GetLabels())
	}
	cm := get(t, objs, "ConfigMap", "cortex-dashboard")
	if cm.GetLabels()["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels %v", cm.GetLabels())
	}
	if d, _, _ := unstructured.NestedString(cm.Object, "data", "cortex.json"); d != strings.TrimSpace(readFile(t, chartDir+"/files/dashboards/cortex.json")) {
		t.Error("the dashboard ConfigMap does not hold files/dashboards/cortex.json verbatim")
	}
}

func TestCPUNeuron(t *testing.T) {
	_, objs := render(t, valueSet{name: "cpu", files: []string{"cpu.yaml"}})
	neuron := podTemplates(t, objs)["DaemonSet/cortex-neuron"]
	c := container(t, neuron, "neuron")
	for _, want := range []string{"--memory-limit=12Gi", "--disable-nvml=true", "--cache-dir=/models"} {
		if !slices.Contains(c.Args, want) {
			t.Errorf("neuron args %v lack %s", c.Args, want)
		}
	}
	if !strings.HasSuffix(c.Image, "-cpu") {
		t.Errorf("neuron image %s", c.Image)
	}
	if len(neuron.Spec.NodeSelector) != 0 || len(neuron.Spec.Tolerations) != 0 || neuron.Spec.RuntimeClassName != nil {
		t.Errorf("CPU neuron keeps GPU scheduling: %v %v", neuron.Spec.NodeSelector, neuron.Spec.Tolerations)
	}
	for _, e := range c.Env {
		if strings.HasPrefix(e.Name, "NVIDIA_") {
			t.Errorf("CPU neuron sets %s", e.Name)
		}
	}
	if len(neuron.Spec.InitContainers) != 0 {
		t.Errorf("fixPermissions=false still renders init containers")
	}
	if len(find(objs, "NetworkPolicy")) != 0 {
		t.Error("NetworkPolicy rendered although disabled")
	}
}

func TestExistingSecrets(t *testing.T) {
	_, objs := render(t, valueSet{name: "existing-secrets", files: []string{"existing-secrets.yaml"}})
	if s := find(objs, "Secret"); len(s) != 0 {
		t.Errorf("chart creates Secrets although existing ones are given: %d", len(s))
	}
	for name, tpl := range podTemplates(t, objs) {
		if _, ok := tpl.Annotations["checksum/neuron-token"]; ok {
			t.Errorf("%s has a checksum of a token the chart does not manage", name)
		}
		for _, v := range tpl.Spec.Volumes {
			if v.Secret == nil {
				continue
			}
			want := map[string]string{"neuron-token": "fleet-neuron-token/bearer", "api-keys": "gateway-keys/keys.txt"}[v.Name]
			got := v.Secret.SecretName + "/" + v.Secret.Items[0].Key
			if got != want {
				t.Errorf("%s volume %s mounts %s, want %s", name, v.Name, got, want)
			}
		}
	}
}

func TestAnonymous(t *testing.T) {
	_, objs := render(t, valueSet{name: "anonymous", files: []string{"anonymous.yaml"}})
	if len(find(objs, "DaemonSet")) != 0 || len(find(objs, "NetworkPolicy")) != 0 {
		t.Error("neuron objects rendered with neuron.enabled=false")
	}
	if len(find(objs, "PodDisruptionBudget")) != 0 {
		t.Error("a PodDisruptionBudget with one replica blocks node drains")
	}
	gw := container(t, podTemplates(t, objs)["Deployment/cortex-gateway"], "gateway")
	if !slices.Contains(gw.Args, "--allow-anonymous=true") || slices.ContainsFunc(gw.Args, func(a string) bool { return strings.HasPrefix(a, "--api-keys-file") }) {
		t.Errorf("gateway args %v", gw.Args)
	}
	// One replica has nobody to share routed prefixes with.
	for _, svc := range find(objs, "Service") {
		if svc.GetName() == "cortex-gateway-peers" {
			t.Error("one gateway replica with a peers Service")
		}
	}
	if slices.ContainsFunc(gw.Args, func(a string) bool { return strings.HasPrefix(a, "--peer") }) {
		t.Errorf("one gateway replica with prefix sync: args %v", gw.Args)
	}
}

// TestRejectedValues: mistakes fail the install with a message that says
// what to fix.
func TestRejectedValues(t *testing.T) {
	cases := []struct {
		name string
		set  []string
		want string
	}{
		{"typo in a key", []string{"gateway.replicaz=3"}, "replicaz"},
		{"unknown variant", []string{"neuron.variant=rocm"}, "variant"},
		{"bad duration", []string{"gateway.coldStartTimeout=ten minutes"}, "coldStartTimeout"},
		{"no keys and not anonymous", []string{"gateway.apiKeys.generate=false"}, "no API keys"},
		{"memory limit on GPUs", []string{"neuron.memoryLimit=8Gi"}, "cpu variant only"},
		{"two managers without election", []string{"manager.replicas=2", "manager.leaderElection.enabled=false"}, "leaderElection"},
		{"key name with a colon", []string{"gateway.apiKeys.keys[0].name=a:b", "gateway.apiKeys.keys[0].key=sk-0123456789"}, "name"},
		{"negative prefix imbalance", []string{"gateway.prefixImbalance=-1"}, "prefixImbalance"},
		{"negative cold-start worth", []string{"manager.coldStartWorth=-1"}, "coldStartWorth"},
		{"HPA bounds", []string{"gateway.autoscaling.enabled=true", "gateway.autoscaling.minReplicas=5", "gateway.autoscaling.maxReplicas=2"}, "minReplicas"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			out, err := renderRaw(t, args...)
			if err == nil {
				t.Fatalf("rendered without error:\n%.400s", out)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error does not mention %q: %v", tc.want, err)
			}
		})
	}
}
