{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "todo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "todo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains (include "todo.name" .) .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "todo.name" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "todo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "todo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: todo-platform
{{- end -}}

{{/* Labels that select the pods of one process; call with (dict "root" $ "component" NAME). */}}
{{- define "todo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "todo.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "todo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "todo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "todo.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "todo.secretName" -}}
{{- default (printf "%s-secrets" (include "todo.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Kafka --------------------------------------------------------------------------------------- */}}

{{- define "todo.kafka.clusterName" -}}
{{- default (printf "%s-kafka" (include "todo.fullname" .)) .Values.kafka.strimzi.clusterName | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "todo.kafka.provider" -}}
{{- $provider := .Values.kafka.provider -}}
{{- if not (has $provider (list "strimzi" "redpanda" "redpanda-cloud" "external")) -}}
{{- fail (printf "kafka.provider=%q: use strimzi, redpanda, redpanda-cloud or external" $provider) -}}
{{- end -}}
{{- $provider -}}
{{- end -}}

{{- define "todo.kafka.bootstrapServers" -}}
{{- $provider := include "todo.kafka.provider" . -}}
{{- if eq $provider "strimzi" -}}
{{- printf "%s-kafka-bootstrap:9092" (include "todo.kafka.clusterName" .) -}}
{{- else if eq $provider "redpanda" -}}
{{- default .Values.kafka.redpanda.bootstrapServers .Values.kafka.bootstrapServers -}}
{{- else -}}
{{- required (printf "kafka.bootstrapServers is required with kafka.provider=%s" $provider) .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "todo.kafka.securityProtocol" -}}
{{- if .Values.kafka.securityProtocol -}}
{{- .Values.kafka.securityProtocol -}}
{{- else if eq (include "todo.kafka.provider" .) "redpanda-cloud" -}}
SASL_SSL
{{- else -}}
PLAINTEXT
{{- end -}}
{{- end -}}

{{- define "todo.kafka.saslMechanism" -}}
{{- if .Values.kafka.sasl.mechanism -}}
{{- .Values.kafka.sasl.mechanism -}}
{{- else if eq (include "todo.kafka.provider" .) "redpanda-cloud" -}}
SCRAM-SHA-256
{{- end -}}
{{- end -}}

{{- define "todo.kafka.saslUsername" -}}
{{- if include "todo.kafka.saslMechanism" . -}}
{{- required "kafka.sasl.username is required with SASL (redpanda-cloud or kafka.sasl.mechanism)" .Values.kafka.sasl.username -}}
{{- end -}}
{{- end -}}

{{- define "todo.kafka.tls" -}}
{{- if has (include "todo.kafka.securityProtocol" .) (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/* The consumers of CONTRACT.md section 4: process name -> topic and consumer group (one group
     per service, so that each service receives every event of its topic). */}}
{{- define "todo.consumers" -}}
audit: {topic: task-events, group: audit-service, command: [python, manage.py, run_consumer, audit]}
recurrence: {topic: task-events, group: recurring-task-service, command: [python, manage.py, run_consumer, recurrence]}
notifications: {topic: reminders, group: notification-service, command: [python, manage.py, run_consumer, notifications]}
realtime: {topic: task-updates, group: websocket-service, command: [python, manage.py, run_consumer, realtime]}
scheduler: {topic: reminders, group: reminder-scheduler, command: [python, manage.py, run_scheduler]}
{{- end -}}

{{/* The run_consumer services: Dapr can deliver to them over HTTP and KEDA can scale them. The
     scheduler is left out of both: it is a timer loop as much as a consumer. */}}
{{- define "todo.eventConsumers" -}}
{{- $all := include "todo.consumers" . | fromYaml -}}
{{- toYaml (omit $all "scheduler") -}}
{{- end -}}

{{/* Every long-running worker: values key, process name, command, probe kind. */}}
{{- define "todo.workers" -}}
- {key: relay, name: relay, probe: metrics, command: [python, manage.py, relay_outbox]}
{{- range $name, $consumer := include "todo.consumers" . | fromYaml }}
- {key: {{ $name }}, name: {{ $name }}, probe: metrics, command: {{ toJson $consumer.command }}}
{{- end }}
- {key: celeryWorker, name: celery-worker, probe: celery-worker, command: [celery, -A, todo_project, worker, --loglevel=INFO]}
- {key: celeryBeat, name: celery-beat, probe: celery-beat, singleton: true, command: [celery, -A, todo_project, beat, --loglevel=INFO]}
{{- end -}}

{{- define "todo.dapr.appId" -}}
{{- printf "%s-%s" (include "todo.fullname" .root) .name -}}
{{- end -}}

{{- define "todo.dapr.publisherComponent" -}}
{{- printf "%s-pubsub" (include "todo.fullname" .) -}}
{{- end -}}

{{- define "todo.dapr.consumerComponent" -}}
{{- printf "%s-pubsub-%s" (include "todo.fullname" .root) .name -}}
{{- end -}}

{{/* Pod template ------------------------------------------------------------------------------
     Call with (dict "root" $ "component" NAME "command" LIST "ports" LIST "probes" DICT
     "resources" DICT "annotations" DICT "grace" INT "env" LIST); "env" overrides the ConfigMap. */}}
{{- define "todo.podTemplate" -}}
{{- $root := .root -}}
metadata:
  labels:
    {{- include "todo.labels" $root | nindent 4 }}
    app.kubernetes.io/component: {{ .component }}
    {{- with $root.Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  annotations:
    # Roll the pods when their configuration changes.
    checksum/config: {{ include (print $root.Template.BasePath "/configmap.yaml") $root | sha256sum }}
    {{- if not $root.Values.secrets.existingSecret }}
    checksum/secrets: {{ include (print $root.Template.BasePath "/secret.yaml") $root | sha256sum }}
    {{- end }}
    {{- with .annotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
    {{- with $root.Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "todo.serviceAccountName" $root }}
  automountServiceAccountToken: {{ $root.Values.serviceAccount.automountToken }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $root.Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ default $root.Values.terminationGracePeriodSeconds .grace }}
  {{- with .restartPolicy }}
  restartPolicy: {{ . }}
  {{- end }}
  containers:
    - name: {{ .component }}
      image: {{ include "todo.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      command:
        {{- toYaml .command | nindent 8 }}
      envFrom:
        - configMapRef:
            name: {{ include "todo.fullname" $root }}-config
        - secretRef:
            name: {{ include "todo.secretName" $root }}
      {{- with .env }}
      env:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .ports }}
      ports:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with .probes }}
      {{- toYaml . | nindent 6 }}
      {{- end }}
      {{- with .lifecycle }}
      lifecycle:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .resources | nindent 8 }}
      securityContext:
        {{- toYaml $root.Values.securityContext | nindent 8 }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
  volumes:
    # The root filesystem is read-only; Python, celery and uvicorn may still need a scratch dir.
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
  {{- with $root.Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Probes of the web process (also of Dapr delivery pods, which run it). Django checks the Host
     header, and the kubelet sends the pod's IP: probe as "localhost", which is always allowed. */}}
{{- define "todo.webProbes" -}}
startupProbe:
  httpGet: {path: /healthz, port: http, httpHeaders: [{name: Host, value: localhost}]}
  periodSeconds: 5
  failureThreshold: 30
livenessProbe:
  httpGet: {path: /healthz, port: http, httpHeaders: [{name: Host, value: localhost}]}
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet: {path: /readyz, port: http, httpHeaders: [{name: Host, value: localhost}]}
  periodSeconds: 10
  timeoutSeconds: 5
  failureThreshold: 3
{{- end -}}

{{/* The migrate Job runs as a pre-install/pre-upgrade hook, before the release's ordinary
     resources exist; what it reads (ConfigMap, Secret, ServiceAccount) must exist before it,
     so these are hooks of a lower weight. Helm leaves hook resources in place on uninstall. */}}
{{- define "todo.configHookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade
helm.sh/hook-weight: "-10"
helm.sh/hook-delete-policy: before-hook-creation
{{- end -}}

{{/* The topics of CONTRACT.md section 4 (events/topics.py is the application's copy): base name
     -> topic config; each has a dead-letter twin "<name>.dlq". task-events keeps 7 days, the
     dead-letter topics 30 (CONTRACT.md section 7). */}}
{{- define "todo.topics" -}}
task-events: {retention.ms: "604800000"}
task-events.dlq: {retention.ms: "2592000000"}
reminders: {}
reminders.dlq: {retention.ms: "2592000000"}
task-updates: {}
task-updates.dlq: {retention.ms: "2592000000"}
{{- end -}}
