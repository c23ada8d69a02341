{{/* Names, labels, images and shared pod settings. */}}

{{- define "cortex.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The prefix of every object name: the release name, suffixed with the chart
name unless it already contains it. Kept at most 47 characters so that
"-neuron-token" and similar suffixes stay within 63.
*/}}
{{- define "cortex.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "cortex.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "cortex.labels" -}}
helm.sh/chart: {{ include "cortex.chart" . }}
app.kubernetes.io/name: {{ include "cortex.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: cortex
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Selector labels of one component. Call with (dict "ctx" $ "component" "gateway").
*/}}
{{- define "cortex.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cortex.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Labels of one component's objects. Same argument as selectorLabels. */}}
{{- define "cortex.componentLabels" -}}
{{ include "cortex.labels" .ctx }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Name of one component's objects: <fullname>-<component>. */}}
{{- define "cortex.componentName" -}}
{{- printf "%s-%s" (include "cortex.fullname" .ctx) .component -}}
{{- end -}}

{{/* ServiceAccount name of a component. */}}
{{- define "cortex.serviceAccountName" -}}
{{- $sa := index .ctx.Values .component "serviceAccount" -}}
{{- if $sa.create -}}
{{- default (include "cortex.componentName" .) $sa.name -}}
{{- else -}}
{{- default "default" $sa.name -}}
{{- end -}}
{{- end -}}

{{/*
Image of a component: <repository>:<tag>, the repository defaulting to
<image.registry>/cortex-<component> and the tag to image.tag, then the
chart's appVersion. The neuron's tag gets its variant as a suffix.
*/}}
{{- define "cortex.image" -}}
{{- $c := index .ctx.Values .component "image" -}}
{{- $repo := default (printf "%s/cortex-%s" .ctx.Values.image.registry .component) $c.repository -}}
{{- $tag := default (default .ctx.Chart.AppVersion .ctx.Values.image.tag) $c.tag -}}
{{- if eq .component "neuron" -}}
{{- $tag = printf "%s-%s" $tag .ctx.Values.neuron.variant -}}
{{- end -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end -}}

{{/* Pod security context: non-root, RuntimeDefault seccomp, merged with the component's. */}}
{{- define "cortex.podSecurityContext" -}}
{{- $base := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "fsGroup" 65532 "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $base (deepCopy .)) -}}
{{- end -}}

{{/* Container security context: read-only root, no privilege escalation, no capabilities. */}}
{{- define "cortex.securityContext" -}}
{{- $base := dict "runAsNonRoot" true "runAsUser" 65532 "runAsGroup" 65532 "allowPrivilegeEscalation" false "readOnlyRootFilesystem" true "privileged" false "capabilities" (dict "drop" (list "ALL")) "seccompProfile" (dict "type" "RuntimeDefault") -}}
{{- toYaml (mergeOverwrite $base (deepCopy .)) -}}
{{- end -}}

{{/* The Secret holding the neuron token, and its key. */}}
{{- define "cortex.neuronTokenSecret" -}}
{{- default (printf "%s-neuron-token" (include "cortex.fullname" .)) .Values.neuronToken.existingSecret -}}
{{- end -}}
{{- define "cortex.neuronTokenKey" -}}
{{- if .Values.neuronToken.existingSecret -}}{{ .Values.neuronToken.existingSecretKey }}{{- else -}}token{{- end -}}
{{- end -}}

{{/*
The neuron token the chart manages: neuronToken.value, else the one already
in the cluster (so upgrades keep it), else a new random one. Computed once
per render and remembered, so every use in one render agrees. Pods are not
restarted when it changes: the manager, gateway and neurons re-read it, and
the neurons accept the previous token for a grace period (docs/gateway.md).
*/}}
{{- define "cortex.neuronTokenValue" -}}
{{- $memo := .Values.__memo | default dict -}}
{{- if not (hasKey $memo "neuronToken") -}}
{{- $v := .Values.neuronToken.value -}}
{{- if not $v -}}
{{- $s := lookup "v1" "Secret" .Release.Namespace (include "cortex.neuronTokenSecret" .) -}}
{{- if and $s $s.data (index $s.data "token") -}}
{{- $v = index $s.data "token" | b64dec -}}
{{- else -}}
{{- $v = randAlphaNum 64 -}}
{{- end -}}
{{- end -}}
{{- $_ := set $memo "neuronToken" $v -}}
{{- $_ := set .Values "__memo" $memo -}}
{{- end -}}
{{- index $memo "neuronToken" -}}
{{- end -}}

{{/* The Secret holding the API keys file, its key, and whether there is one. */}}
{{- define "cortex.apiKeysSecret" -}}
{{- default (printf "%s-api-keys" (include "cortex.fullname" .)) .Values.gateway.apiKeys.existingSecret -}}
{{- end -}}
{{- define "cortex.apiKeysKey" -}}
{{- if .Values.gateway.apiKeys.existingSecret -}}{{ .Values.gateway.apiKeys.existingSecretKey }}{{- else -}}api-keys{{- end -}}
{{- end -}}
{{- define "cortex.hasAPIKeys" -}}
{{- $k := .Values.gateway.apiKeys -}}
{{- if or $k.existingSecret $k.keys $k.generate -}}true{{- end -}}
{{- end -}}

{{/*
Rules of a generated ClusterRole, read from files/rbac/<component>.yaml
(copied from config/rbac/<component>/role.yaml by hack/chart-sync.sh).
The file may hold several documents; the ClusterRole's rules are taken.
*/}}
{{- define "cortex.generatedRules" -}}
{{- $file := printf "files/rbac/%s.yaml" .component -}}
{{- $content := .ctx.Files.Get $file -}}
{{- if not $content -}}
{{- fail (printf "%s is missing from the chart: run `make manifests` (hack/chart-sync.sh)" $file) -}}
{{- end -}}
{{- $rules := list -}}
{{- range $doc := regexSplit "(?m)^---\\s*$" $content -1 -}}
{{- $obj := fromYaml $doc -}}
{{- if and $obj (eq (toString $obj.kind) "ClusterRole") -}}
{{- $rules = concat $rules ($obj.rules | default list) -}}
{{- end -}}
{{- end -}}
{{- if not $rules -}}
{{- fail (printf "%s holds no ClusterRole rules" $file) -}}
{{- end -}}
{{- toYaml (dict "rules" $rules) -}}
{{- end -}}

{{/* Checks of value combinations the schema cannot express. */}}
{{- define "cortex.validate" -}}
{{- if and (not (include "cortex.hasAPIKeys" .)) (not .Values.gateway.allowAnonymous) -}}
{{- fail "gateway: no API keys. Set gateway.apiKeys.existingSecret, gateway.apiKeys.keys or gateway.apiKeys.generate=true, or gateway.allowAnonymous=true to serve without keys." -}}
{{- end -}}
{{- if and (gt (int .Values.manager.replicas) 1) (not .Values.manager.leaderElection.enabled) -}}
{{- fail "manager: replicas > 1 needs manager.leaderElection.enabled=true (two active managers would fight over placements)." -}}
{{- end -}}
{{- if and .Values.neuron.memoryLimit (ne .Values.neuron.variant "cpu") -}}
{{- fail "neuron.memoryLimit applies to the cpu variant only; GPU memory is read from the GPUs." -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (gt (int .Values.gateway.autoscaling.minReplicas) (int .Values.gateway.autoscaling.maxReplicas)) -}}
{{- fail "gateway.autoscaling.minReplicas must not exceed maxReplicas." -}}
{{- end -}}
{{- if and .Values.gateway.autoscaling.enabled (not .Values.gateway.autoscaling.targetCPUUtilizationPercentage) (not .Values.gateway.autoscaling.targetMemoryUtilizationPercentage) -}}
{{- fail "gateway.autoscaling needs targetCPUUtilizationPercentage or targetMemoryUtilizationPercentage." -}}
{{- end -}}
{{- end -}}

{{/*
cortex.gatewayPrefixSync is "true" when the gateway replicas share routed
prompt prefixes: asked for, and more than one replica may run.
*/}}
{{- define "cortex.gatewayPrefixSync" -}}
{{- $v := .Values.gateway -}}
{{- if and $v.prefixSync.enabled (or $v.autoscaling.enabled (gt (int $v.replicas) 1)) -}}
true
{{- end -}}
{{- end -}}
