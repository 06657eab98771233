{{/* Names and labels. */}}
{{- define "moderation-consumer.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moderation-consumer.fullname" -}}
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

{{- define "moderation-consumer.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moderation-consumer.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The standard labels of every object; commonLabels join them (the standard ones win, and the
schema refuses the two selector labels in commonLabels and podLabels). */}}
{{- define "moderation-consumer.standardLabels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "moderation-consumer.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/component: consumer
{{- end }}

{{- define "moderation-consumer.labels" -}}
{{- $standard := include "moderation-consumer.standardLabels" . | fromYaml }}
{{- toYaml (merge $standard (deepCopy (default dict .Values.commonLabels))) }}
{{- end }}

{{/* The pods' labels: the selector labels, then podLabels, commonLabels and the standard labels. */}}
{{- define "moderation-consumer.podLabels" -}}
{{- $selector := include "moderation-consumer.selectorLabels" . | fromYaml }}
{{- $labels := merge $selector (deepCopy (default dict .Values.podLabels)) (include "moderation-consumer.labels" . | fromYaml) }}
{{- toYaml $labels }}
{{- end }}

{{- define "moderation-consumer.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moderation-consumer.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "moderation-consumer.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag }}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* The settings the service reads, as the chart reads them: the service's defaults where a value
is not set (HealthSettings.port, CallbackSettings.port, ProcessingSettings.drain_timeout_s,
KafkaSettings; a unit test compares them with consumer/settings_sections.py). */}}
{{- define "moderation-consumer.healthPort" -}}
{{- dig "health" "port" 8080 .Values.settings | int }}
{{- end }}

{{- define "moderation-consumer.callbacksPort" -}}
{{- dig "callbacks" "port" 8081 .Values.settings | int }}
{{- end }}

{{- define "moderation-consumer.exactlyOnce" -}}
{{- if eq (dig "processing" "delivery" "at_least_once" .Values.settings) "exactly_once" }}true{{ end }}
{{- end }}

{{/* terminationGracePeriodSeconds: the drain deadline, rounded up, plus a margin (to commit and
close); one number to set, settings.processing.drain_timeout_s. */}}
{{- define "moderation-consumer.gracePeriod" -}}
{{- $drain := dig "processing" "drain_timeout_s" 25 .Values.settings | float64 }}
{{- add (ceil $drain | int) (int .Values.gracePeriodMarginSeconds) }}
{{- end }}

{{- define "moderation-consumer.publicUrl" -}}
{{- with .Values.ingress }}
{{- if .enabled }}
{{- printf "%s://%s" (ternary "https" "http" (not (empty .tls))) .host }}
{{- end }}
{{- end }}
{{- end }}

{{/* The rendered settings file: the values' settings, and callbacks.public_url from the Ingress
when it is not set. */}}
{{- define "moderation-consumer.settings" -}}
{{- $settings := deepCopy .Values.settings }}
{{- $url := include "moderation-consumer.publicUrl" . }}
{{- if $url }}
{{- $callbacks := default dict (get $settings "callbacks") }}
{{- if not (get $callbacks "public_url") }}
{{- $_ := set $callbacks "public_url" $url }}
{{- $_ := set $settings "callbacks" $callbacks }}
{{- end }}
{{- end }}
{{- toYaml $settings }}
{{- end }}

{{/* Secret keys → the variable of the setting that reads the mounted file. */}}
{{- define "moderation-consumer.secretFiles" -}}
hive_visual_key: MODERATION_HIVE__VISUAL_KEY_FILE
hive_text_key: MODERATION_HIVE__TEXT_KEY_FILE
hive_csam_key: MODERATION_HIVE__CSAM_KEY_FILE
hive_index_key: MODERATION_HIVE__INDEX_KEY_FILE
huawei_token: MODERATION_HUAWEI__TOKEN_FILE
callbacks_token: MODERATION_CALLBACKS__TOKEN_FILE
schema_registry_basic_auth_user_info: MODERATION_SCHEMA_REGISTRY__BASIC_AUTH_USER_INFO_FILE
schema_registry_bearer_token: MODERATION_SCHEMA_REGISTRY__BEARER_TOKEN_FILE
{{- end }}

{{/* The secret keys mounted as files: [{key, path, env}] (empty without existingSecret). */}}
{{- define "moderation-consumer.secretItems" -}}
{{- $files := include "moderation-consumer.secretFiles" . | fromYaml }}
{{- $items := list }}
{{- if .Values.secrets.existingSecret }}
{{- range $name := keys $files | sortAlpha }}
{{- $key := get $.Values.secrets.keys $name }}
{{- if $key }}
{{- $items = append $items (dict "key" $key "path" $key "env" (get $files $name)) }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml (dict "items" $items) }}
{{- end }}

{{/* The most consumers that can get a partition: replicas × workers may not exceed it. */}}
{{- define "moderation-consumer.checkPartitions" -}}
{{- $partitions := int .root.Values.autoscaling.inputPartitions }}
{{- $workers := int .root.Values.workers }}
{{- if gt (mul (int .replicas) $workers) $partitions }}
{{- fail (printf "%s (%d) times workers (%d) exceeds autoscaling.inputPartitions (%d): a consumer beyond the input topic's partitions gets none and is never ready" .name (int .replicas) $workers $partitions) }}
{{- end }}
{{- end }}

{{/* Values the schema cannot relate to one another. */}}
{{- define "moderation-consumer.validate" -}}
{{- if not (dig "health" "enabled" true .Values.settings) }}
{{- fail "settings.health.enabled: the chart's probes and scrape need the health server" }}
{{- end }}
{{- if eq (include "moderation-consumer.healthPort" .) "0" }}
{{- fail "settings.health.port: the probes need a fixed port, not 0" }}
{{- end }}
{{- if eq (include "moderation-consumer.callbacksPort" .) "0" }}
{{- fail "settings.callbacks.port: the Service needs a fixed port, not 0" }}
{{- end }}
{{- if and (include "moderation-consumer.exactlyOnce" .) (gt (int .Values.workers) 1) }}
{{- fail "workers: exactly_once takes 1 worker per pod (the pod name is its one producer's transactional_id)" }}
{{- end }}
{{- $keda := .Values.autoscaling.keda }}
{{- $hpa := .Values.autoscaling.hpa }}
{{- if and $keda.enabled $hpa.enabled }}
{{- fail "autoscaling.keda.enabled and autoscaling.hpa.enabled: KEDA makes its own HPA, enable one of them" }}
{{- end }}
{{- if $keda.enabled }}
{{- if gt (int $keda.minReplicaCount) (int $keda.maxReplicaCount) }}
{{- fail "autoscaling.keda.minReplicaCount exceeds autoscaling.keda.maxReplicaCount" }}
{{- end }}
{{- if and $keda.authenticationRef $keda.secretTargetRef }}
{{- fail "autoscaling.keda.authenticationRef and autoscaling.keda.secretTargetRef: give one of them" }}
{{- end }}
{{- if and $keda.secretTargetRef (not .Values.secrets.existingSecret) }}
{{- fail "autoscaling.keda.secretTargetRef needs secrets.existingSecret" }}
{{- end }}
{{- include "moderation-consumer.checkPartitions" (dict "root" . "name" "autoscaling.keda.maxReplicaCount" "replicas" $keda.maxReplicaCount) }}
{{- else if $hpa.enabled }}
{{- if gt (int $hpa.minReplicas) (int $hpa.maxReplicas) }}
{{- fail "autoscaling.hpa.minReplicas exceeds autoscaling.hpa.maxReplicas" }}
{{- end }}
{{- include "moderation-consumer.checkPartitions" (dict "root" . "name" "autoscaling.hpa.maxReplicas" "replicas" $hpa.maxReplicas) }}
{{- else }}
{{- include "moderation-consumer.checkPartitions" (dict "root" . "name" "replicaCount" "replicas" .Values.replicaCount) }}
{{- end }}
{{- if and .Values.monitoring.podMonitor.enabled .Values.monitoring.serviceMonitor.enabled }}
{{- fail "monitoring.podMonitor.enabled and monitoring.serviceMonitor.enabled: enable one (each would scrape every pod)" }}
{{- end }}
{{- if and .Values.ingress.enabled (not .Values.ingress.host) }}
{{- fail "ingress.host: required when ingress.enabled" }}
{{- end }}
{{- end }}

{{/* extraInitContainers, each given the container securityContext when it sets none (so the pod
stays within the restricted Pod Security Standard). */}}
{{- define "moderation-consumer.initContainers" -}}
{{- $containers := list }}
{{- range .Values.extraInitContainers }}
{{- $container := deepCopy . }}
{{- if and $.Values.securityContext (not (hasKey $container "securityContext")) }}
{{- $_ := set $container "securityContext" (deepCopy $.Values.securityContext) }}
{{- end }}
{{- $containers = append $containers $container }}
{{- end }}
{{- toYaml $containers }}
{{- end }}

{{/* The labels of an object that has labels of its own (a monitor's `release`, the dashboard's
`grafana_dashboard`): the standard labels, then its own, then commonLabels, as one mapping (a key in
two of them once). Called with (dict "root" $ "labels" OWN). */}}
{{- define "moderation-consumer.labelsWith" -}}
{{- $standard := include "moderation-consumer.standardLabels" .root | fromYaml }}
{{- toYaml (merge $standard (deepCopy (default dict .labels)) (deepCopy (default dict .root.Values.commonLabels))) }}
{{- end }}
