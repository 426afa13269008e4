{{/*
dstream.name is the chart name, or nameOverride.
*/}}
{{- define "dstream.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
dstream.fullname names the release's objects: fullnameOverride, else release-chart (just the release name when it
already contains the chart name), cut to the 63 characters a DNS label allows.
*/}}
{{- define "dstream.fullname" -}}
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

{{/*
dstream.chart is name-version, for the helm.sh/chart label.
*/}}
{{- define "dstream.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
dstream.labels are the standard labels every object of the release carries.
*/}}
{{- define "dstream.labels" -}}
helm.sh/chart: {{ include "dstream.chart" . }}
{{ include "dstream.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/component: stream-processor
app.kubernetes.io/part-of: dstream
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
dstream.selectorLabels select the release's pods; they never change across upgrades.
*/}}
{{- define "dstream.selectorLabels" -}}
app.kubernetes.io/name: {{ include "dstream.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
dstream.serviceAccountName is the ServiceAccount the pods run as.
*/}}
{{- define "dstream.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "dstream.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
dstream.image is repository@digest when a digest is set, else repository:tag (tag defaults to appVersion).
*/}}
{{- define "dstream.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/*
dstream.secretName is the Secret the pods read secret settings from: existingSecret, else the chart's own one.
*/}}
{{- define "dstream.secretName" -}}
{{- default (printf "%s-secret" (include "dstream.fullname" .)) .Values.existingSecret }}
{{- end }}

{{/*
dstream.managedSecret is "true" when the chart renders its own Secret: no existingSecret and a password to keep.
*/}}
{{- define "dstream.managedSecret" -}}
{{- if and (not .Values.existingSecret) (or .Values.kafka.sasl.password .Values.redis.password) }}true{{ end }}
{{- end }}

{{/*
dstream.countriesConfigMap names the ConfigMap holding the countries CSV.
*/}}
{{- define "dstream.countriesConfigMap" -}}
{{- default (printf "%s-countries" (include "dstream.fullname" .)) .Values.countries.existingConfigMap }}
{{- end }}

{{/*
dstream.countriesCSV is the CSV the chart ships in its ConfigMap: countries.csv, else files/countries.csv.
*/}}
{{- define "dstream.countriesCSV" -}}
{{- .Values.countries.csv | default (.Files.Get "files/countries.csv") }}
{{- end }}

{{/*
dstream.milliseconds turns a Go-style duration made of integers and the units ms, s, m, h (values.schema.json
allows only those, e.g. 10s or 1m30s) into a number of milliseconds.
*/}}
{{- define "dstream.milliseconds" -}}
{{- $total := 0 }}
{{- range regexFindAll "[0-9]+(ms|h|m|s)" (toString .) -1 }}
{{- $n := regexFind "^[0-9]+" . }}
{{- $unit := trimPrefix $n . }}
{{- $factor := get (dict "ms" 1 "s" 1000 "m" 60000 "h" 3600000) $unit }}
{{- $total = add $total (mul (int $n) $factor) }}
{{- end }}
{{- $total }}
{{- end }}

{{/*
dstream.validate fails the render on combinations of values that the schema cannot express.
*/}}
{{- define "dstream.validate" -}}
{{- $c := .Values.config }}
{{- $graceMs := mul .Values.terminationGracePeriodSeconds 1000 }}
{{- $shutdownMs := include "dstream.milliseconds" $c.shutdownGrace | int }}
{{- $batchMs := include "dstream.milliseconds" $c.batchInterval | int }}
{{- if le $batchMs 0 }}
{{- fail (printf "config.batchInterval (%s) must be positive" $c.batchInterval) }}
{{- end }}
{{- range $key := list "window" "slide" }}
{{- $ms := include "dstream.milliseconds" (get $c $key) | int }}
{{- if or (le $ms 0) (ne (mod $ms $batchMs) 0) }}
{{- fail (printf "config.%s (%s) must be a positive multiple of config.batchInterval (%s)" $key (get $c $key) $c.batchInterval) }}
{{- end }}
{{- end }}
{{- if lt $shutdownMs $batchMs }}
{{- fail (printf "config.shutdownGrace (%s) must be at least config.batchInterval (%s), so that the batch in flight can finish" $c.shutdownGrace $c.batchInterval) }}
{{- end }}
{{- if lt (include "dstream.milliseconds" $c.leaseTTL | int) 500 }}
{{- fail (printf "config.leaseTTL (%s) must be at least 500ms" $c.leaseTTL) }}
{{- end }}
{{- if le $graceMs $shutdownMs }}
{{- fail (printf "terminationGracePeriodSeconds (%d) must be longer than config.shutdownGrace (%s), or Kubernetes kills the pod before it commits the batch in flight" (int .Values.terminationGracePeriodSeconds) $c.shutdownGrace) }}
{{- end }}
{{- if and .Values.existingSecret (or .Values.kafka.sasl.password .Values.redis.password) }}
{{- fail "existingSecret is set: put the passwords into that Secret (keys DSTREAM_KAFKA_SASL_PASSWORD, DSTREAM_REDIS_PASSWORD) and leave kafka.sasl.password and redis.password empty" }}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.user) }}
{{- fail "kafka.sasl.mechanism is set: set kafka.sasl.user too" }}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (not (or .Values.kafka.sasl.password .Values.existingSecret)) }}
{{- fail "kafka.sasl.mechanism is set: set kafka.sasl.password, or existingSecret with the key DSTREAM_KAFKA_SASL_PASSWORD" }}
{{- end }}
{{- if and .Values.kafka.brokers (not .Values.redis.addr) }}
{{- fail "kafka.brokers is set: set redis.addr too, the Redis host:port that keeps the checkpoints (dstream refuses to start without it)" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.autoscaling.enabled) (not .Values.redis.addr) }}
{{- fail "replicaCount > 1 runs hot standbys, which coordinate through a lease in Redis: set redis.addr, or use replicaCount 1" }}
{{- end }}
{{- with .Values.autoscaling }}
{{- if .enabled }}
{{- if lt (int .maxReplicas) (int .minReplicas) }}
{{- fail (printf "autoscaling.maxReplicas (%d) must be at least autoscaling.minReplicas (%d)" (int .maxReplicas) (int .minReplicas)) }}
{{- end }}
{{- if and (gt (int .maxReplicas) 1) (not $.Values.redis.addr) }}
{{- fail "autoscaling runs more than one pod, and pods coordinate through a lease in Redis: set redis.addr" }}
{{- end }}
{{- end }}
{{- end }}
{{- $min := .Values.podDisruptionBudget.minAvailable }}
{{- if and .Values.podDisruptionBudget.enabled (or (kindIs "float64" $min) (kindIs "int64" $min) (kindIs "int" $min)) (not .Values.autoscaling.enabled) (gt (int $min) (int .Values.replicaCount)) }}
{{- fail (printf "podDisruptionBudget.minAvailable (%d) is more than replicaCount (%d): no pod could ever be evicted, so node drains would hang" (int $min) (int .Values.replicaCount)) }}
{{- end }}
{{- end }}

{{/*
dstream.podCount is the number of pods the PodDisruptionBudget plans for: replicaCount, or the HPA's floor
(autoscaling.minReplicas) when autoscaling is on.
*/}}
{{- define "dstream.podCount" -}}
{{- if .Values.autoscaling.enabled }}
{{- .Values.autoscaling.minReplicas | int }}
{{- else }}
{{- .Values.replicaCount | int }}
{{- end }}
{{- end }}

{{/*
dstream.minAvailable is the PodDisruptionBudget's minAvailable, or "" for no budget: podDisruptionBudget.minAvailable
when set, else a majority of the N pods, floor(N/2)+1, but at most N-1 so that a drain can evict one pod at a time
(N = 2 gives 1), and none for a single pod (see values.yaml).
*/}}
{{- define "dstream.minAvailable" -}}
{{- $set := .Values.podDisruptionBudget.minAvailable }}
{{- $n := include "dstream.podCount" . | int }}
{{- if or (kindIs "float64" $set) (kindIs "int" $set) (kindIs "int64" $set) }}
{{- $set | int }}
{{- else if $set }}
{{- $set }}
{{- else if gt $n 1 }}
{{- min (add (div $n 2) 1) (sub $n 1) }}
{{- end }}
{{- end }}

{{/*
dstream.ruleSelector is the label matchers that select this release's series in the alert rules:
metrics.prometheusRule.matchLabels, else the job and namespace labels the chart's ServiceMonitor gives them (the job
label of a ServiceMonitor's targets is the Service's name).
*/}}
{{- define "dstream.ruleSelector" -}}
{{- $m := .Values.metrics.prometheusRule.matchLabels }}
{{- if not $m }}
{{- $m = dict "job" (include "dstream.fullname" .) "namespace" .Release.Namespace }}
{{- end }}
{{- $parts := list }}
{{- range $k := keys $m | sortAlpha }}
{{- $parts = append $parts (printf "%s=%s" $k (get $m $k | toJson)) }}
{{- end }}
{{- join ", " $parts }}
{{- end }}

{{/*
dstream.countriesKey is the key of the countries CSV in its ConfigMap, and so the mounted file's name.
*/}}
{{- define "dstream.countriesKey" -}}
{{- if .Values.countries.existingConfigMap }}
{{- .Values.countries.existingConfigMapKey }}
{{- else -}}
countries.csv
{{- end }}
{{- end }}
