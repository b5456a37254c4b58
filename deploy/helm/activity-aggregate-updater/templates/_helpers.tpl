{{/* Chart name, overridable. */}}
{{- define "aau.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects: the release name, then the chart's unless it contains it. */}}
{{- define "aau.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "aau.selectorLabels" -}}
app.kubernetes.io/name: {{ include "aau.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "aau.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "aau.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: stream-job
app.kubernetes.io/part-of: sunbird-lern
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/* The image reference: by digest when one is given, else by tag (default: appVersion). */}}
{{- define "aau.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag | toString) }}
{{- end }}
{{- end }}

{{/*
A configuration value as the job reads it: a string. YAML numbers arrive as
float64, which would print as 1e+06; whole ones are printed as integers.
*/}}
{{- define "aau.envValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) }}
{{- int64 . | toString }}
{{- else }}
{{- toString . }}
{{- end }}
{{- end }}

{{/*
SHUTDOWN_TIMEOUT in whole seconds, rounded up, parsed as the job parses a
duration (lib/config.ts): a number with an optional ms, s or m; a bare number
is seconds. The job's default is 25s.
*/}}
{{- define "aau.shutdownTimeoutSeconds" -}}
{{- $raw := include "aau.envValue" (default "25s" .Values.config.SHUTDOWN_TIMEOUT) | trim }}
{{- if not (regexMatch "^[0-9]+(\\.[0-9]+)?\\s*(ms|s|m)?$" $raw) }}
{{- fail (printf "config.SHUTDOWN_TIMEOUT=%q: expected a duration such as 25, 25s, 2500ms or 1m" $raw) }}
{{- end }}
{{- $number := regexFind "^[0-9]+(\\.[0-9]+)?" $raw | float64 }}
{{- $unit := regexFind "(ms|s|m)$" $raw }}
{{- $seconds := $number }}
{{- if eq $unit "ms" }}{{ $seconds = divf $number 1000 }}{{ end }}
{{- if eq $unit "m" }}{{ $seconds = mulf $number 60 }}{{ end }}
{{- ceil $seconds | int64 }}
{{- end }}

{{/*
terminationGracePeriodSeconds: the value given, which must leave 5 s after
SHUTDOWN_TIMEOUT, or SHUTDOWN_TIMEOUT + 5 s.
*/}}
{{- define "aau.terminationGracePeriodSeconds" -}}
{{- $shutdown := include "aau.shutdownTimeoutSeconds" . | int64 }}
{{- $least := add $shutdown 5 }}
{{- $given := .Values.terminationGracePeriodSeconds }}
{{- if kindIs "invalid" $given }}
{{- $least }}
{{- else if lt (int64 $given) $least }}
{{- fail (printf "terminationGracePeriodSeconds=%v must be at least SHUTDOWN_TIMEOUT (%ds) + 5 = %d: a pod killed during its graceful stop loses the commit of its last window" $given $shutdown $least) }}
{{- else }}
{{- int64 $given }}
{{- end }}
{{- end }}

{{/* Stops rendering on values that would deploy a broken or wasteful job. */}}
{{- define "aau.validate" -}}
{{- $partitions := int64 .Values.kafka.inputTopicPartitions }}
{{- if lt $partitions 1 }}
{{- fail "kafka.inputTopicPartitions must be at least 1" }}
{{- end }}
{{- if gt (int64 .Values.replicaCount) $partitions }}
{{- fail (printf "replicaCount=%v exceeds kafka.inputTopicPartitions=%v: Kafka gives each partition to one consumer of the group, so the extra pods would sit idle. Add partitions to the input topic first, then raise kafka.inputTopicPartitions" .Values.replicaCount .Values.kafka.inputTopicPartitions) }}
{{- end }}
{{- range $name := list "HTTP_HOST" "HTTP_PORT" }}
{{- if hasKey $.Values.config $name }}
{{- fail (printf "config.%s is set by the chart (from httpPort); remove it from config" $name) }}
{{- end }}
{{- end }}
{{- if and .Values.podDisruptionBudget.enabled (not (kindIs "invalid" .Values.podDisruptionBudget.minAvailable)) (not (kindIs "invalid" .Values.podDisruptionBudget.maxUnavailable)) }}
{{- fail "podDisruptionBudget: set minAvailable or maxUnavailable, not both (set the other to null)" }}
{{- end }}
{{- if and .Values.metrics.serviceMonitor.enabled (not .Values.service.enabled) }}
{{- fail "metrics.serviceMonitor.enabled needs service.enabled" }}
{{- end }}
{{- range .Values.secretEnv }}
{{- if not (and .name .key (or .secretName $.Values.existingSecret)) }}
{{- fail (printf "secretEnv entry %v needs name, key and secretName (or existingSecret)" .) }}
{{- end }}
{{- end }}
{{- end }}
