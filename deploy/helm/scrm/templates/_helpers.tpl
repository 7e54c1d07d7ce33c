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

{{/* SCRM_NOTIFY_URL of journey (it checks template ids against notify's API): services.journey.notifyUrl, or
     this release's notify-api Service. */}}
{{- define "scrm.notifyUrl" -}}
{{- if .Values.services.journey.notifyUrl -}}
{{- .Values.services.journey.notifyUrl -}}
{{- else -}}
{{- printf "http://%s:%v" (include "scrm.componentName" (dict "root" . "service" "notify" "role" "api")) .Values.services.notify.port -}}
{{- end -}}
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
{{- $env := deepCopy ($svc.env | default dict) -}}
{{- if eq $service "journey" -}}
{{- $env = mergeOverwrite (dict "SCRM_NOTIFY_URL" (include "scrm.notifyUrl" $)) $env -}}
{{- end -}}
{{- $out = append $out (dict "service" $service "role" $role "port" $svc.port "env" $env "cfg" $cfg) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $out) -}}
{{- end -}}

{{/* The environment of an SCRM container: call with
     (dict "root" $ "secret" NAME "clientId" ID "roles" ROLES-or-"" "env" SERVICE-ENV-MAP).
     Later sources win, one entry per name: chart settings < extraEnv < the service's env. */}}
{{- define "scrm.env" -}}
{{- $v := .root.Values -}}
{{- $plain := dict
  "SCRM_ENV" $v.env
  "SCRM_LOG_LEVEL" $v.logLevel
  "SCRM_DB__POOL_SIZE" $v.postgres.poolSize
  "SCRM_DB__MAX_OVERFLOW" $v.postgres.maxOverflow
  "SCRM_KAFKA__BOOTSTRAP_SERVERS" (required "kafka.bootstrapServers is required" $v.kafka.bootstrapServers)
  "SCRM_KAFKA__CLIENT_ID" .clientId
  "SCRM_KAFKA__ENABLE_IDEMPOTENCE" $v.kafka.enableIdempotence
  "SCRM_KAFKA__LINGER_MS" $v.kafka.lingerMs
  "SCRM_KAFKA__MAX_BATCH_SIZE" $v.kafka.maxBatchSize
  "SCRM_KAFKA__SESSION_TIMEOUT_MS" $v.kafka.sessionTimeoutMs
  "SCRM_KAFKA__REQUEST_TIMEOUT_MS" $v.kafka.requestTimeoutMs
-}}
{{- if .roles -}}
{{- $_ := set $plain "SCRM_ROLES" .roles -}}
{{- end -}}
{{- $plain = mergeOverwrite $plain (deepCopy ($v.extraEnv | default dict)) (deepCopy (.env | default dict)) -}}
{{- if hasKey $plain "SCRM_DB__URL" -}}
{{- fail "SCRM_DB__URL comes from postgres.url or postgres.existingSecret, not from extraEnv or services.*.env" -}}
{{- end -}}
- name: SCRM_DB__URL
  valueFrom:
    secretKeyRef:
      name: {{ .secret }}
      key: {{ $v.postgres.existingSecretKey }}
{{- range $name := keys $plain | sortAlpha }}
- name: {{ $name }}
  value: {{ index $plain $name | toString | quote }}
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
