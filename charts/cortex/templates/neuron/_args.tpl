{{- /*
==========================================================================
 NEURON COMMAND LINE - the one place this chart passes flags to the neuron
==========================================================================
 Every flag and environment variable the neuron DaemonSet gives the neuron
 binary is here; the DaemonSet only includes these two blocks. Reconcile
 with internal/neuron/config.go (Config.BindFlags) and cmd/neuron/main.go
 when the neuron's flags change: test/chart (TestNeuronFlagsExist) fails
 when a flag below is not defined there.

 Flags with an environment fallback may equally be given as CORTEX_<FLAG>
 variables; the chart uses flags so `kubectl describe` shows them.
==========================================================================
*/ -}}

{{- define "cortex.neuron.args" -}}
{{- $v := .Values.neuron -}}
- --addr=:{{ $v.port }}
# The Kubernetes node this pod runs on names its NeuronNode.
- --node-name=$(NODE_NAME)
# The endpoint the manager and the gateway reach this neuron on is
# http://<pod IP>:<port>.
- --pod-ip=$(POD_IP)
- --token-file=/etc/cortex/neuron-token/token
- --cache-dir={{ $v.modelCache.mountPath }}
- --heartbeat-interval={{ $v.heartbeatInterval }}
{{- if eq $v.variant "cpu" }}
# A CPU build cannot use GPUs even where NVML finds some; advertise the CPU.
- --disable-nvml=true
{{- with $v.memoryLimit }}
- --memory-limit={{ . }}
{{- end }}
{{- end }}
- --zap-log-level={{ .Values.logLevel }}
{{- with $v.extraArgs }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "cortex.neuron.env" -}}
{{- $v := .Values.neuron -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
# The root filesystem is read-only; libraries that keep per-user caches
# (the CUDA JIT cache, for one) write under /tmp, an emptyDir.
- name: HOME
  value: /tmp
{{- with $v.huggingface.tokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $v.huggingface.tokenSecretKey }}
      optional: true
{{- end }}
{{- with $v.huggingface.endpoint }}
- name: HF_ENDPOINT
  value: {{ . | quote }}
{{- end }}
{{- if and (eq $v.variant "cuda") (not (int $v.gpu.count)) }}
# No device-plugin request: the NVIDIA runtime exposes every GPU of the host.
- name: NVIDIA_VISIBLE_DEVICES
  value: all
{{- end }}
{{- if eq $v.variant "cuda" }}
# compute for CUDA, utility for NVML (memory, utilisation).
- name: NVIDIA_DRIVER_CAPABILITIES
  value: compute,utility
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}
