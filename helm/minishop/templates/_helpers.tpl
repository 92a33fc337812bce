{{/* Names and labels. */}}
{{- define "minishop.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "minishop.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "minishop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "minishop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "minishop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "minishop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: minishop
{{- end -}}

{{- define "minishop.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{- define "minishop.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "minishop.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the app's secrets: an existing one, or the chart's. */}}
{{- define "minishop.secretName" -}}
{{- .Values.existingSecret | default (include "minishop.fullname" .) -}}
{{- end -}}

{{/*
gunicorn's graceful_timeout (backend/gunicorn.conf.py; tests/platform/test_helm.py checks they
agree). Kubernetes gives a pod terminationGracePeriodSeconds for its preStop pause and then the
SIGTERM: the pause, gunicorn's graceful timeout, and 5 s for the master to reap its workers and
exit before the kubelet's SIGKILL.
*/}}
{{- define "minishop.gunicornGracefulTimeoutSeconds" -}}20{{- end -}}

{{- define "minishop.terminationGracePeriodSeconds" -}}
{{- add (include "minishop.gunicornGracefulTimeoutSeconds" . | int) .Values.preStopSleepSeconds 5 -}}
{{- end -}}

{{/* The secret keys the app reads (minishop/config.py), all from one Secret. */}}
{{- define "minishop.secretKeys" -}}
{{- list "SECRET_KEY" "JWT_SECRET" "DATA_ENCRYPTION_KEY" "FILE_URL_SECRET" "WECHAT_SECRET" "WECHATPAY_APIV3_KEY" "DATABASE_URL" "REDIS_URL" | toJson -}}
{{- end -}}

{{/* The non-secret settings, as a ConfigMap's data (strings). */}}
{{- define "minishop.configData" -}}
{{- range $name, $value := .Values.settings }}
{{- /* YAML numbers arrive as float64: 5242880 must not become "5.24288e+06". */}}
{{- if and (kindIs "float64" $value) (eq $value (float64 (int64 $value))) }}
{{ $name }}: {{ $value | int64 | toString | quote }}
{{- else }}
{{ $name }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}
UPLOAD_DIR: {{ .Values.uploads.mountPath | quote }}
{{- if .Values.wechatEmulator.enabled }}
WECHAT_API_BASE: {{ printf "http://%s-wechat-emulator:%d" (include "minishop.fullname" .) (.Values.wechatEmulator.port | int) | quote }}
WECHATPAY_API_BASE: {{ printf "http://%s-wechat-emulator:%d" (include "minishop.fullname" .) (.Values.wechatEmulator.port | int) | quote }}
{{- end }}
{{- if .Values.wechatpay.existingSecret }}
WECHATPAY_PRIVATE_KEY_FILE: {{ printf "%s/%s" .Values.wechatpay.mountPath .Values.wechatpay.privateKeyItem | quote }}
{{- if .Values.wechatpay.publicKeyId }}
WECHATPAY_PUBLIC_KEY_ID: {{ .Values.wechatpay.publicKeyId | quote }}
WECHATPAY_PUBLIC_KEY_FILE: {{ printf "%s/%s" .Values.wechatpay.mountPath .Values.wechatpay.publicKeyItem | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
The environment of every container running the app (server, migration, CronJobs): the
ConfigMap `config`, the Secret `secret`, and the secret keys one by one so that a missing key
stops the pod at creation instead of the app at run time.
*/}}
{{- define "minishop.envFrom" -}}
- configMapRef:
    name: {{ .config }}
{{- end -}}

{{- define "minishop.secretEnv" -}}
{{- $secret := .secret -}}
{{- range (include "minishop.secretKeys" .root | fromJsonArray) }}
- name: {{ . }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ . }}
{{- end }}
{{- end -}}

{{- define "minishop.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "minishop.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* Writable places under the read-only root filesystem, and the WeChat Pay keys. */}}
{{- define "minishop.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: uploads
  mountPath: {{ .Values.uploads.mountPath }}
{{- if .Values.wechatpay.existingSecret }}
- name: wechatpay-keys
  mountPath: {{ .Values.wechatpay.mountPath }}
  readOnly: true
{{- end }}
{{- end -}}

{{- define "minishop.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
- name: uploads
{{- if .Values.uploads.persistence.enabled }}
  persistentVolumeClaim:
    claimName: {{ .Values.uploads.persistence.existingClaim | default (printf "%s-uploads" (include "minishop.fullname" .)) }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if .Values.wechatpay.existingSecret }}
- name: wechatpay-keys
  secret:
    secretName: {{ .Values.wechatpay.existingSecret }}
    defaultMode: 0440
{{- end }}
{{- end -}}

{{/*
The pod of a one-off command (migration, CronJobs): the server's image, settings, secrets and
security, running `flask --app minishop ARGS`. Arguments: root, name, args, config, secret.
*/}}
{{- define "minishop.commandPodSpec" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "minishop.serviceAccountName" $root }}
automountServiceAccountToken: false
restartPolicy: Never
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "minishop.podSecurityContext" $root | nindent 2 }}
containers:
  - name: {{ .name }}
    image: {{ include "minishop.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    command: ["flask", "--app", "minishop"]
    args: {{ .args | toJson }}
    envFrom:
      {{- include "minishop.envFrom" . | nindent 6 }}
    env:
      {{- include "minishop.secretEnv" . | nindent 6 }}
    resources:
      {{- toYaml $root.Values.jobs.resources | nindent 6 }}
    securityContext:
      {{- include "minishop.containerSecurityContext" $root | nindent 6 }}
    volumeMounts:
      {{- include "minishop.volumeMounts" $root | nindent 6 }}
volumes:
  {{- include "minishop.volumes" $root | nindent 2 }}
{{- end -}}

{{/*
Database connections at the worst moment must fit under the server's max_connections
(README.md, "Capacity"): every gunicorn worker of every pod holds up to DB_POOL_SIZE +
DB_MAX_OVERFLOW connections; pods = the most replicas (HPA max, or replicaCount) plus the
rolling update's surge (25 %, rounded up); and each one-off pod (migration, each CronJob) runs
one process with the same pool.
*/}}
{{- define "minishop.checkCapacity" -}}
{{- $perProcess := add (.Values.settings.DB_POOL_SIZE | int) (.Values.settings.DB_MAX_OVERFLOW | int) -}}
{{- $replicas := .Values.autoscaling.enabled | ternary .Values.autoscaling.maxReplicas .Values.replicaCount | int -}}
{{- $pods := add $replicas (div (add (mul $replicas 25) 99) 100) -}}
{{- $jobs := 1 -}}
{{- range .Values.cronJobs }}{{ if .enabled }}{{ $jobs = add1 $jobs }}{{ end }}{{ end -}}
{{- $needed := add (mul $perProcess (.Values.gunicorn.workers | int) $pods) (mul $perProcess $jobs) -}}
{{- $available := sub (.Values.database.maxConnections | int) (.Values.database.reservedConnections | int) -}}
{{- if gt (int $needed) (int $available) -}}
{{- fail (printf "database capacity: (DB_POOL_SIZE %d + DB_MAX_OVERFLOW %d) x %d workers x %d pods (%d replicas + surge) + %d one-off pods x %d = %d connections, more than database.maxConnections %d - reservedConnections %d = %d" (.Values.settings.DB_POOL_SIZE | int) (.Values.settings.DB_MAX_OVERFLOW | int) (.Values.gunicorn.workers | int) (int $pods) $replicas $jobs $perProcess (int $needed) (.Values.database.maxConnections | int) (.Values.database.reservedConnections | int) $available) -}}
{{- end -}}
{{- end -}}

{{/*
TRUSTED_PROXY_COUNT must be the number of proxies in front of the pods (the ingress controller,
the edge): one too few and every client shares the proxy's address in the rate limiter and the
logs; one too many and a client picks its own address with X-Forwarded-For.
*/}}
{{- define "minishop.checkProxies" -}}
{{- $proxies := add (.Values.ingress.enabled | ternary 1 0) (.Values.edge.enabled | ternary 1 0) -}}
{{- if ne (.Values.settings.TRUSTED_PROXY_COUNT | int) (int $proxies) -}}
{{- fail (printf "settings.TRUSTED_PROXY_COUNT is %d, but %d proxies stand in front of the pods (ingress.enabled %t, edge.enabled %t)" (.Values.settings.TRUSTED_PROXY_COUNT | int) (int $proxies) .Values.ingress.enabled .Values.edge.enabled) -}}
{{- end -}}
{{- end -}}
