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
{{- printf "%s-kafka-bootstrap:9093" (include "todo.kafka.clusterName" .) -}}
{{- else if eq $provider "redpanda" -}}
{{- default .Values.kafka.redpanda.bootstrapServers .Values.kafka.bootstrapServers -}}
{{- else -}}
{{- required (printf "kafka.bootstrapServers is required with kafka.provider=%s" $provider) .Values.kafka.bootstrapServers -}}
{{- end -}}
{{- end -}}

{{- define "todo.kafka.securityProtocol" -}}
{{- if .Values.kafka.securityProtocol -}}
{{- .Values.kafka.securityProtocol -}}
{{- else if has (include "todo.kafka.provider" .) (list "redpanda-cloud" "strimzi") -}}
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
{{- else if eq (include "todo.kafka.provider" .) "strimzi" -}}
SCRAM-SHA-512
{{- end -}}
{{- end -}}

{{/* The one SASL user of every process; with strimzi each process has its own (todo.kafkaEnv). */}}
{{- define "todo.kafka.saslUsername" -}}
{{- if and (include "todo.kafka.saslMechanism" .) (ne (include "todo.kafka.provider" .) "strimzi") -}}
{{- required "kafka.sasl.username is required with SASL (redpanda-cloud or kafka.sasl.mechanism)" .Values.kafka.sasl.username -}}
{{- end -}}
{{- end -}}

{{- define "todo.kafka.tls" -}}
{{- if has (include "todo.kafka.securityProtocol" .) (list "SSL" "SASL_SSL") -}}true{{- end -}}
{{- end -}}

{{/* The consumers (CONTRACT.md section 4): process name -> topic, consumer group, command, via_dapr.
     The list is events/consumers.yaml, the registry's own file (events/registry.py loads and checks
     it), read through the link files/consumers.yaml: one list for the code and the chart. Each runs
     `run_consumer <name>` unless a command is given, and Dapr can deliver to it (and KEDA scale it)
     unless via_dapr is false. Its replicas and resources are workers.consumers of values.yaml, per
     process workers.<name>. */}}
{{- define "todo.consumers" -}}
{{ .Files.Get "files/consumers.yaml" }}
{{- end -}}

{{/* Who talks to Kafka and what each process may do there: process -> topics it reads (with its
     consumer group), topics it writes, cluster operations. With strimzi this is each process's
     KafkaUser and its ACLs (strimzi.yaml), the listener's networkPolicyPeers and the credentials
     of its pods (todo.kafkaEnv). The relay is the only producer of events (everything else writes
     the outbox); a consumer writes only its dead letters. The web process only asks for metadata
     (the checks.kafka of /readyz): a user without ACLs. The migrate Job creates topics only where
     KafkaTopic resources do not (not with strimzi), with the one shared SASL user. */}}
{{- define "todo.kafkaAccess" -}}
relay: {write: [task-events, reminders, task-updates], cluster: [IdempotentWrite]}
{{- range $name, $consumer := include "todo.consumers" . | fromYaml }}
{{ $name }}: {read: [{{ $consumer.topic }}], group: {{ $consumer.group }}, write: [{{ $consumer.topic }}.dlq]}
{{- end }}
web: {}
{{- end -}}

{{- define "todo.kafkaUserName" -}}
{{- printf "%s-%s" (include "todo.fullname" .root) .name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Where pods find the Strimzi cluster CA (the listener is TLS); the ConfigMap's
     KAFKA_SSL_CA_LOCATION points at it. */}}
{{- define "todo.kafka.caDir" -}}/etc/kafka-ca{{- end -}}
{{- define "todo.kafka.caSecret" -}}{{ include "todo.kafka.clusterName" . }}-cluster-ca-cert{{- end -}}

{{/* The Kafka credentials of one process's pods; call with (dict "root" $ "name" PROCESS). */}}
{{- define "todo.kafkaEnv" -}}
{{- $root := .root -}}
{{- $access := include "todo.kafkaAccess" $root | fromYaml -}}
{{- $env := list -}}
{{- if eq (include "todo.kafka.provider" $root) "strimzi" -}}
{{- if hasKey $access .name -}}
{{- $user := include "todo.kafkaUserName" . -}}
{{- $env = list (dict "name" "KAFKA_SASL_USERNAME" "value" $user) (dict "name" "KAFKA_SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" $user "key" "password"))) -}}
{{- end -}}
{{- else if and (include "todo.kafka.saslMechanism" $root) (or (hasKey $access .name) (eq .name "migrate")) -}}
{{- $env = list (dict "name" "KAFKA_SASL_PASSWORD" "valueFrom" (dict "secretKeyRef" (dict "name" (include "todo.secretName" $root) "key" "KAFKA_SASL_PASSWORD"))) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* The keys of the Secret each process reads, and nothing else: every Django process needs
     SECRET_KEY and DATABASE_URL; Redis (channel layer, celery broker) only those that use it; the
     LLM key only the web process (chat); the mail password only the celery worker, which sends
     the e-mails. Kafka credentials: todo.kafkaEnv. Dapr delivery pods are their consumer's. */}}
{{- define "todo.secretKeysOf" -}}
web: [REDIS_URL, LLM_API_KEY]
realtime: [REDIS_URL]
notifications: [REDIS_URL]
celery-worker: [REDIS_URL, EMAIL_HOST_PASSWORD]
celery-beat: [REDIS_URL]
{{- end -}}
{{- define "todo.requiredSecretKeys" -}}[SECRET_KEY, DATABASE_URL, REDIS_URL]{{- end -}}

{{- define "todo.secretEnv" -}}
{{- $root := .root -}}
{{- $required := include "todo.requiredSecretKeys" $root | fromYamlArray -}}
{{- $keys := concat (list "SECRET_KEY" "DATABASE_URL") (index (include "todo.secretKeysOf" $root | fromYaml) .name | default list) -}}
{{- $env := list -}}
{{- range $keys -}}
{{- $ref := dict "name" (include "todo.secretName" $root) "key" . -}}
{{- if not (has . $required) -}}{{- $_ := set $ref "optional" true -}}{{- end -}}
{{- $env = append $env (dict "name" . "valueFrom" (dict "secretKeyRef" $ref)) -}}
{{- end -}}
{{- toYaml $env -}}
{{- end -}}

{{/* The processes that reach Redis, from todo.secretKeysOf: the Redis NetworkPolicy lets in these only. */}}
{{- define "todo.redisClients" -}}
{{- $clients := list -}}
{{- range $name, $keys := include "todo.secretKeysOf" . | fromYaml -}}
{{- if has "REDIS_URL" $keys -}}{{- $clients = append $clients $name -}}{{- end -}}
{{- end -}}
{{- toYaml $clients -}}
{{- end -}}

{{/* The consumers that Dapr can deliver to over HTTP and KEDA can scale (via_dapr, default true). */}}
{{- define "todo.eventConsumers" -}}
{{- $delivered := dict -}}
{{- range $name, $consumer := include "todo.consumers" . | fromYaml -}}
{{- if ne $consumer.via_dapr false -}}{{- $_ := set $delivered $name $consumer -}}{{- end -}}
{{- end -}}
{{- toYaml $delivered -}}
{{- end -}}

{{/* Every long-running worker: values key, process name, command, probe kind. */}}
{{- define "todo.workers" -}}
- {key: relay, name: relay, probe: metrics, command: [python, manage.py, relay_outbox]}
{{- range $name, $consumer := include "todo.consumers" . | fromYaml }}
- {key: {{ $name }}, name: {{ $name }}, probe: metrics, consumer: true, command: {{ $consumer.command | default (list "python" "manage.py" "run_consumer" $name) | toJson }}}
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

{{/* The app token the sidecars send in dapr-api-token: the given Secret, or the chart's own (dapr.yaml). */}}
{{- define "todo.dapr.appTokenSecret" -}}
{{- default (printf "%s-dapr-app-token" (include "todo.fullname" .)) .Values.dapr.appTokenSecret -}}
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
      {{- /* Only the secrets this process uses (todo.secretEnv, todo.kafkaEnv), then .env. */}}
      {{- $process := dict "root" $root "name" .component }}
      env:
        {{- concat (include "todo.secretEnv" $process | fromYamlArray) (include "todo.kafkaEnv" $process | fromYamlArray) (.env | default list) | toYaml | nindent 8 }}
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
      {{- $strimziCa := and (eq (include "todo.kafka.provider" $root) "strimzi") (hasKey (include "todo.kafkaAccess" $root | fromYaml) .component) }}
      volumeMounts:
        - name: tmp
          mountPath: /tmp
        {{- if $strimziCa }}
        - name: kafka-ca
          mountPath: {{ include "todo.kafka.caDir" $root }}
          readOnly: true
        {{- end }}
  volumes:
    # The root filesystem is read-only; Python, celery and uvicorn may still need a scratch dir.
    - name: tmp
      emptyDir:
        sizeLimit: 256Mi
    {{- if $strimziCa }}
    # The CA of the Strimzi cluster's TLS listener (made by the operator, public).
    - name: kafka-ca
      secret:
        secretName: {{ include "todo.kafka.caSecret" $root }}
        items: [{key: ca.crt, path: ca.crt}]
    {{- end }}
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
     so these are hooks of a lower weight. A rollback does not touch hooks of other kinds: they
     are pre-rollback hooks too, so that `helm rollback` restores the configuration of the revision
     it returns to (not the migrate Job: it is no pre-rollback hook). Helm leaves hook resources in
     place on uninstall. */}}
{{- define "todo.configHookAnnotations" -}}
helm.sh/hook: pre-install,pre-upgrade,pre-rollback
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

{{/* The public routes of the web process, the only paths the Ingress routes (tests/helm derive the
     list from the URLconf: a new route must be added here or to the private list there). Never
     /dapr/ (delivery pods only), /metrics, /readyz, /healthz (probes and Prometheus, in-cluster). */}}
{{- define "todo.publicPaths" -}}
- {path: /, pathType: Exact}          # the web app
- {path: /signup/, pathType: Prefix}
- {path: /login/, pathType: Prefix}
- {path: /logout/, pathType: Prefix}
- {path: /settings/, pathType: Prefix}        # account settings
- {path: /password-reset/, pathType: Prefix}  # password reset: the request form
- {path: /reset/, pathType: Prefix}           # password reset: the mailed link and its result
- {path: /confirm-email/, pathType: Prefix}   # the address-confirmation link
- {path: /api/, pathType: Prefix}     # REST API, its schema and docs
- {path: /admin/, pathType: Prefix}
- {path: /static/, pathType: Prefix}
- {path: /ws/, pathType: Prefix}      # WebSocket sync
- {path: /mcp, pathType: Prefix}      # MCP over streamable HTTP (/mcp and /mcp/)
{{- end -}}
