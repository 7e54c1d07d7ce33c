{{/* Chart name (nameOverride wins). */}}
{{- define "scrm.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name prefix of every resource. */}}
{{- define "scrm.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "scrm.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels common to every resource. */}}
{{- define "scrm.labels" -}}
app.kubernetes.io/name: {{ include "scrm.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{ include "scrm.metaLabels" . }}
{{- end -}}

{{/* The labels that are not selectors. */}}
{{- define "scrm.metaLabels" -}}
helm.sh/chart: {{ include "scrm.chart" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: scrm
{{- end -}}

{{/* Selector labels of one component: call with (dict "root" $ "service" "profile" "role" "api"). */}}
{{- define "scrm.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scrm.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ printf "%s-%s" .service .role }}
{{- end -}}

{{/* Labels of one component's resources. */}}
{{- define "scrm.componentLabels" -}}
{{ include "scrm.metaLabels" .root }}
{{ include "scrm.selectorLabels" . }}
scrm.io/service: {{ .service }}
scrm.io/role: {{ .role }}
{{- end -}}

{{/* Name of one component's resources: <fullname>-<service>-<role>. */}}
{{- define "scrm.componentName" -}}
{{- printf "%s-%s-%s" (include "scrm.fullname" .root) .service .role | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "scrm.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "scrm.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "scrm.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Secret and key holding SCRM_DB__URL. */}}
{{- define "scrm.dbSecretName" -}}
{{- default (printf "%s-db" (include "scrm.fullname" .)) .Values.postgres.existingSecret -}}
{{- end -}}

{{/* The Secret the hook Jobs read (they run before the release's own Secret exists). */}}
{{- define "scrm.hookDbSecretName" -}}
{{- default (printf "%s-db-hook" (include "scrm.fullname" .)) .Values.postgres.existingSecret -}}
{{- end -}}

{{/* The components to deploy: a list of dicts {service, role, port, env, cfg}; cfg is the role's values merged
     over .Values.defaults. Serialised as YAML, since templates return strings. */}}
{{- define "scrm.components" -}}
{{- $out := list -}}
{{- range $service := list "ingest" "profile" "journey" "notify" -}}
{{- $svc := index $.Values.services $service -}}
{{- range $role := list "api" "consumer" "scheduler" -}}
{{- $roleValues := index $svc $role | default dict -}}
{{- if $roleValues.enabled -}}
{{- $cfg := mergeOverwrite (deepCopy $.Values.defaults) (deepCopy $roleValues) -}}
{{- $out = append $out (dict "service" $service "role" $role "port" $svc.port "env" ($svc.env | default dict) "cfg" $cfg) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $out) -}}
{{- end -}}

{{/* Environment shared by every process and the hook Jobs: call with (dict "root" $ "secret" NAME "clientId" ID). */}}
{{- define "scrm.baseEnv" -}}
{{- $v := .root.Values -}}
- name: SCRM_ENV
  value: {{ $v.env | quote }}
- name: SCRM_LOG_LEVEL
  value: {{ $v.logLevel | quote }}
- name: SCRM_DB__URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $v.postgres.existingSecretKey }}
- name: SCRM_DB__POOL_SIZE
  value: {{ $v.postgres.poolSize | quote }}
- name: SCRM_DB__MAX_OVERFLOW
  value: {{ $v.postgres.maxOverflow | quote }}
- name: SCRM_KAFKA__BOOTSTRAP_SERVERS
  value: {{ required "kafka.bootstrapServers is required" $v.kafka.bootstrapServers | quote }}
- name: SCRM_KAFKA__CLIENT_ID
  value: {{ .clientId | quote }}
- name: SCRM_KAFKA__ENABLE_IDEMPOTENCE
  value: {{ $v.kafka.enableIdempotence | quote }}
- name: SCRM_KAFKA__LINGER_MS
  value: {{ $v.kafka.lingerMs | quote }}
- name: SCRM_KAFKA__MAX_BATCH_SIZE
  value: {{ $v.kafka.maxBatchSize | quote }}
- name: SCRM_KAFKA__SESSION_TIMEOUT_MS
  value: {{ $v.kafka.sessionTimeoutMs | quote }}
- name: SCRM_KAFKA__REQUEST_TIMEOUT_MS
  value: {{ $v.kafka.requestTimeoutMs | quote }}
{{- range $name, $value := $v.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end -}}

{{/* Pod spec parts shared by Deployments and Jobs. */}}
{{- define "scrm.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end -}}
