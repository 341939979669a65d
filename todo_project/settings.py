"""Settings, read from environment variables only (see README "Configuration" and .env.example).

Every default is safe for local development on 127.0.0.1; production sets the variables.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name, default=""):
    return os.environ.get(name, default)


def env_bool(name, default=False):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean (use true or false)")


def env_int(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None


def env_float(name, default):
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None


def env_list(name, default):
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def env_rate(name, default):
    """A rate limit "<requests>/<window>", the window in s, m, h or d with an optional count (10/15m)."""
    value = env(name, default)
    if not re.fullmatch(r"[1-9][0-9]*/([1-9][0-9]*)?[smhd]", value):
        raise ImproperlyConfigured(f"{name}={value!r} is not a rate such as 10/15m (requests per window)")
    return value


DEBUG = env_bool("DEBUG", False)
# Local development (DEBUG=true: the Makefile exports it for every target, pyproject.toml for a plain
# pytest) may use a fixed key; anything else refuses to start rather than sign sessions with a public one.
SECRET_KEY = env("SECRET_KEY") or ("insecure-local-development-key" if DEBUG else "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "SECRET_KEY is empty and DEBUG is off: set SECRET_KEY to a long random value "
        "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=true for local development"
    )
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver")
# The origins (scheme://host[:port]) allowed to POST with a session and to open a session WebSocket
# (tasks/accounts/auth.py), besides the request's own origin.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "http://127.0.0.1:8000,http://localhost:8000")

# Production security: HTTPS only. Each is on by default with DEBUG off (`manage.py check --deploy` then
# reports nothing) and can be turned off for a plain-http setup. Behind the Ingress the request is plain
# http; uvicorn turns X-Forwarded-Proto/-For into the scheme and client address only for peers listed in
# FORWARDED_ALLOW_IPS (uvicorn's own variable, default 127.0.0.1; see .env.example), so Django sees https.
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Probes (kubelet) and the Dapr sidecar (delivery pods, todo_project/delivery.py) speak plain http.
SECURE_REDIRECT_EXEMPT = [r"^(healthz|readyz|metrics)$", r"^dapr/"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "knox",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "channels",
    "django_celery_beat",
    "events",
    "tasks",
    "tasks.accounts",
    "tasks.chat",
    "tasks.realtime",
    "tasks.web",
    "audit",
    "notifications",
    "recurrence",
]

MIDDLEWARE = [
    # First, so that every response (errors included) echoes the request's correlation id.
    "todo_project.middleware.CorrelationIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # Serves the admin's and web app's static files from the one image, no separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Refuses sign-in and registration beyond their rates (429) before a password is hashed.
    "tasks.accounts.doors.RateLimitMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

AUTH_USER_MODEL = "tasks.User"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "app"
LOGOUT_REDIRECT_URL = "login"
ROOT_URLCONF = "todo_project.urls"
ASGI_APPLICATION = "todo_project.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASE_URL = env("DATABASE_URL", "postgres://todo:todo@127.0.0.1:5432/todo")
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        conn_health_checks=True,
    )
}
DATABASES["default"].setdefault("OPTIONS", {})["connect_timeout"] = env_int("DATABASE_CONNECT_TIMEOUT", 5)
# Under ASGI every request runs its sync code in a fresh thread, so persistent connections
# (CONN_MAX_AGE) are never reused and each request would pay a new PostgreSQL login; a psycopg
# pool (Django 5.1+) shares connections across threads. 0 turns it off (then CONN_MAX_AGE applies).
DATABASE_POOL_MAX_SIZE = env_int("DATABASE_POOL_MAX_SIZE", 0)
if DATABASE_POOL_MAX_SIZE > 0:
    DATABASES["default"]["OPTIONS"]["pool"] = {"min_size": 1, "max_size": DATABASE_POOL_MAX_SIZE, "timeout": 10}

REDIS_URL = env("REDIS_URL", "redis://127.0.0.1:6379/0")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # The prefix namespaces groups and channels in Redis (each test run uses its own).
        "CONFIG": {
            # redis-py's default 5 s read timeout equals channels-redis's 5 s blocking pop, so a
            # busy event loop turns an idle wait into a TimeoutError that kills the socket's
            # consumer; reads get a margin well beyond the pop instead.
            # Each web worker's pool: redis-py's default cap of 100 connections, reached when hundreds
            # of sockets join or leave their groups at once (a worker restarting), fails the rest
            # at once with MaxConnectionsError; a socket left in its group is sent to until expiry
            # (bench/bench_growth.py --part sockets counts such exceptions).
            "hosts": [{"address": REDIS_URL, "socket_timeout": 30,
                       "max_connections": env_int("CHANNEL_LAYER_MAX_CONNECTIONS", 2000)}],
            "prefix": env("CHANNEL_LAYER_PREFIX", "asgi"),
            # Messages waiting per socket before channels-redis drops new ones (default 100): room
            # for a burst while the socket's consumer is busy; clients still catch up after a loss.
            "capacity": env_int("CHANNEL_LAYER_CAPACITY", 1000),
        },
    }
}

# Kafka. Topic and consumer-group names are prefixed so that several environments (or a test run
# beside `make run`) can share one cluster without seeing each other's events.
KAFKA_BOOTSTRAP_SERVERS = env("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
KAFKA_TOPIC_PREFIX = env("KAFKA_TOPIC_PREFIX", "")
KAFKA_GROUP_PREFIX = env("KAFKA_GROUP_PREFIX", "")
KAFKA_SECURITY_PROTOCOL = env("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT")
KAFKA_SASL_MECHANISM = env("KAFKA_SASL_MECHANISM", "")
KAFKA_SASL_USERNAME = env("KAFKA_SASL_USERNAME", "")
KAFKA_SASL_PASSWORD = env("KAFKA_SASL_PASSWORD", "")
# chart (Strimzi TLS listener): a PEM file of the CA that signed the brokers' certificates; empty:
# the system's CA store.
KAFKA_SSL_CA_LOCATION = env("KAFKA_SSL_CA_LOCATION", "")
KAFKA_TOPIC_PARTITIONS = env_int("KAFKA_TOPIC_PARTITIONS", 3)
# -1 lets the broker apply its default.replication.factor (1 locally, 3 on a real cluster).
KAFKA_TOPIC_REPLICATION_FACTOR = env_int("KAFKA_TOPIC_REPLICATION_FACTOR", -1)

# The consumer runtime (events/consumer.py). A failing handler runs up to MAX_ATTEMPTS times in all,
# waiting INITIAL_BACKOFF, then x MULTIPLIER each time (capped at MAX_BACKOFF) seconds in between.
CONSUMER_RETRY_MAX_ATTEMPTS = env_int("CONSUMER_RETRY_MAX_ATTEMPTS", 5)
CONSUMER_RETRY_INITIAL_BACKOFF = env_float("CONSUMER_RETRY_INITIAL_BACKOFF", 0.5)
CONSUMER_RETRY_MULTIPLIER = env_float("CONSUMER_RETRY_MULTIPLIER", 2.0)
CONSUMER_RETRY_MAX_BACKOFF = env_float("CONSUMER_RETRY_MAX_BACKOFF", 30.0)
# A consumer stops when more than this share of its last WINDOW messages were dead-lettered.
CONSUMER_DLQ_STOP_RATIO = env_float("CONSUMER_DLQ_STOP_RATIO", 0.9)
CONSUMER_DLQ_STOP_WINDOW = env_int("CONSUMER_DLQ_STOP_WINDOW", 100)
CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS = env_float("CONSUMER_DLQ_WRITE_TIMEOUT_SECONDS", 30.0)
# Up to this many already-fetched events are handled in one database transaction. Only a backlog fills
# a batch (a poll takes what is already fetched, so a caught-up consumer's batches stay small); there
# each batch's fixed statements are shared by more events: the audit consumer's PostgreSQL CPU per
# event fell by a fifth from 100 to 500 and little more at 1000 (issue #14). Not more: a batch's
# transaction holds what it locked until it commits (the recurring-task service takes its users'
# sync-log locks, which their web writes wait for).
CONSUMER_BATCH_SIZE = env_int("CONSUMER_BATCH_SIZE", 500)
CONSUMER_COMMIT_INTERVAL_MS = env_int("CONSUMER_COMMIT_INTERVAL_MS", 100)
CONSUMER_LAG_INTERVAL_SECONDS = env_float("CONSUMER_LAG_INTERVAL_SECONDS", 10.0)
# The consumer's handler time budget (issue 15): a handler call running longer fails that event
# (retried, then dead-lettered); database statements inside its transaction are bounded by it too.
# The liveness limit and max.poll.interval.ms derive from it (events/consumer.py).
CONSUMER_HANDLER_TIMEOUT_SECONDS = env_float("CONSUMER_HANDLER_TIMEOUT_SECONDS", 30.0)
# replay_dlq refuses to send a letter back more often than this.
DLQ_REPLAY_CAP = env_int("DLQ_REPLAY_CAP", 3)
# Workers (run_consumer) serve /metrics, /healthz and /readyz on this port; 0 (the default) serves none, so
# that the several workers of `make run` do not compete for one port. The Helm chart sets it.
METRICS_PORT = env_int("METRICS_PORT", 0)
METRICS_ADDR = env("METRICS_ADDR", "0.0.0.0")

EVENT_TRANSPORT = env("EVENT_TRANSPORT", "kafka")
# The function that stores emitted events (events/outbox.py): the outbox rows. Benchmarks only select
# another for their baselines (bench/outbox_writers.py: none, the seed's produce+flush); never change it.
OUTBOX_WRITER = env("OUTBOX_WRITER", "events.outbox.write_rows")
if EVENT_TRANSPORT not in {"kafka", "dapr"}:
    raise ImproperlyConfigured(f"EVENT_TRANSPORT={EVENT_TRANSPORT!r}: use kafka or dapr")
# With EVENT_TRANSPORT=dapr the outbox relay publishes through its Dapr sidecar: the sidecar
# injects DAPR_HTTP_PORT; the Helm chart names the publisher component in DAPR_PUBSUB_NAME.
DAPR_HTTP_PORT = env_int("DAPR_HTTP_PORT", 3500)
DAPR_PUBSUB_NAME = env("DAPR_PUBSUB_NAME", "pubsub")
# Dapr delivers events to POST /dapr/events/<consumer> (events/transports/dapr.py). The Helm chart subscribes
# declaratively (Subscription resources), so GET /dapr/subscribe answers [] unless this is true:
# then it lists the consumers of DAPR_CONSUMERS (empty: every registered consumer), for a
# `dapr run` without Subscription files. Dead letters are published to DAPR_PUBSUB_NAME.
DAPR_PROGRAMMATIC_SUBSCRIPTIONS = env_bool("DAPR_PROGRAMMATIC_SUBSCRIPTIONS", False)
DAPR_CONSUMERS = env_list("DAPR_CONSUMERS", "")

# Who publishes the outbox (README "Debezium"): relay (relay_outbox, one leader at a time) or
# debezium (Debezium's PostgreSQL connector on a Kafka Connect worker reads the outbox table
# through logical replication: `manage.py run_connect` locally, the chart's KafkaConnect). The
# process of the other publisher says it is not needed and publishes nothing.
OUTBOX_PUBLISHER = env("OUTBOX_PUBLISHER", "relay")
if OUTBOX_PUBLISHER not in {"relay", "debezium"}:
    raise ImproperlyConfigured(f"OUTBOX_PUBLISHER={OUTBOX_PUBLISHER!r}: use relay or debezium")
# debezium: the connector's replication slot in PostgreSQL (relay_outbox reports its lag).
DEBEZIUM_SLOT_NAME = env("DEBEZIUM_SLOT_NAME", "todo_outbox")
# The token the sidecar sends in the dapr-api-token header (Dapr's APP_API_TOKEN); when set, the
# /dapr/ routes refuse requests without it.
DAPR_APP_API_TOKEN = env("DAPR_APP_API_TOKEN", env("APP_API_TOKEN", ""))

# Readiness checks must answer well within a Kubernetes probe's timeout.
READINESS_TIMEOUT_SECONDS = float(env("READINESS_TIMEOUT_SECONDS", "2"))
# /readyz reuses its last answer for this long (events/readiness.py): probes cost one round a second.
READINESS_CACHE_SECONDS = env_float("READINESS_CACHE_SECONDS", 1.0)

# Chat (POST /api/chat/): an OpenAI-compatible chat-completions endpoint, e.g.
# https://api.openai.com/v1 or a local server's .../v1. Without a base URL and model the
# built-in interpreter answers instead.
LLM_BASE_URL = env("LLM_BASE_URL", "")
LLM_API_KEY = env("LLM_API_KEY", "")
LLM_MODEL = env("LLM_MODEL", "")
LLM_TIMEOUT_SECONDS = float(env("LLM_TIMEOUT_SECONDS", "30"))
# Rounds of model answer + tool calls per chat message before the agent gives up.
LLM_MAX_STEPS = env_int("LLM_MAX_STEPS", 8)

CELERY_BROKER_URL = env("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"
# The queue tasks are sent to when nobody names one (the e-mail sender's); tests give each run its own.
CELERY_TASK_DEFAULT_QUEUE = env("CELERY_TASK_DEFAULT_QUEUE", "celery")

EMAIL_BACKEND = env("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_HOST = env("EMAIL_HOST", "127.0.0.1")
EMAIL_PORT = env_int("EMAIL_PORT", 1025)
EMAIL_HOST_USER = env("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
EMAIL_USE_SSL = env_bool("EMAIL_USE_SSL", False)
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", "todo@localhost")
# make run's mail catcher (python manage.py run_mail_catcher, development only): it listens on
# EMAIL_HOST:EMAIL_PORT and shows what it caught on this port.
MAIL_CATCHER_HTTP_PORT = env_int("MAIL_CATCHER_HTTP_PORT", 8025)
# Retention of the sync log (tasks.TaskChange): older changes are purged (celery beat, hourly), and
# GET /api/sync/ answers 410 to a cursor from before the purge (CONTRACT.md 7, Retention).
SYNC_LOG_RETENTION_DAYS = env_int("SYNC_LOG_RETENTION_DAYS", 14)
# E-mail delivery apart from the pipeline (notifications.mail): retries with backoff after commit,
# a per-user hourly cap, and the address confirmation that reminders wait for.
EMAIL_RETRY_MAX_ATTEMPTS = env_int("EMAIL_RETRY_MAX_ATTEMPTS", 5)
EMAIL_RETRY_INITIAL_BACKOFF = env_float("EMAIL_RETRY_INITIAL_BACKOFF", 30.0)
EMAIL_MAX_PER_USER_PER_HOUR = env_int("EMAIL_MAX_PER_USER_PER_HOUR", 20)
EMAIL_CONFIRMATION_MAX_AGE = env_int("EMAIL_CONFIRMATION_MAX_AGE", 3 * 24 * 3600)
SITE_URL = env("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # knox's, without a query per request for the user's other tokens (tasks/accounts/tokens.py)
        "tasks.accounts.tokens.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Limits (CONTRACT.md section 7): JSON of any depth parses or is a 400; service errors
    # (a domain rule, a task deleted concurrently) are a 400 / 404, never a 500.
    "DEFAULT_PARSER_CLASSES": [
        "todo_project.parsers.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "tasks.errors.exception_handler",
}

# Limits (CONTRACT.md section 7): request bodies over this are answered 413 by the ASGI
# middleware in front of every route (todo_project/asgi.py); Django's own limit follows it.
MAX_REQUEST_BODY_BYTES = env_int("MAX_REQUEST_BODY_BYTES", 1024 * 1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = MAX_REQUEST_BODY_BYTES

SPECTACULAR_SETTINGS = {
    "TITLE": "Todo platform API",
    "DESCRIPTION": "Tasks, audit trail, notifications and sync of the event-driven todo platform.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the installed package, not a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# Trust: API tokens and rate limits (tasks/accounts/tokens.py, tasks/ratelimit.py, tasks/accounts/doors.py).
# API tokens (django-rest-knox) are stored as SHA-512 digests and expire this long after sign-in.
API_TOKEN_TTL_HOURS = env_int("API_TOKEN_TTL_HOURS", 24 * 7)
REST_KNOX = {"TOKEN_TTL": timedelta(hours=API_TOKEN_TTL_HOURS)}
# Sign-in (POST /api/auth/token/, /login/, /admin/login/, /api/auth/password/) is counted per client
# address and per username, registration per address; a request beyond its rate gets a 429.
SIGN_IN_RATE_PER_ADDRESS = env_rate("SIGN_IN_RATE_PER_ADDRESS", "30/15m")
SIGN_IN_RATE_PER_USERNAME = env_rate("SIGN_IN_RATE_PER_USERNAME", "10/15m")
REGISTER_RATE_PER_ADDRESS = env_rate("REGISTER_RATE_PER_ADDRESS", "10/h")
# Account settings and password reset (issue 13, tasks/accounts/views.py): reset requests per client address
# and per e-mail address asked for (tasks.accounts.doors.PASSWORD_RESET), and how long a reset link stays valid.
PASSWORD_RESET_RATE_PER_ADDRESS = env_rate("PASSWORD_RESET_RATE_PER_ADDRESS", "10/h")
PASSWORD_RESET_RATE_PER_EMAIL = env_rate("PASSWORD_RESET_RATE_PER_EMAIL", "3/h")
PASSWORD_RESET_TIMEOUT = env_int("PASSWORD_RESET_TIMEOUT", 3600)
# Task writes that schedule a reminder, per user and hour (beyond: 429, the write does not happen).
REMINDERS_PER_USER_PER_HOUR = env_int("REMINDERS_PER_USER_PER_HOUR", 100)
# The counters live in Redis, so that every web process shares them (django-ratelimit's settings).
RATELIMIT_USE_CACHE = "ratelimit"
RATELIMIT_CACHE_PREFIX = env("RATELIMIT_CACHE_PREFIX", "rl:")
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
    "ratelimit": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        # An unreachable Redis must cost a refused request (503, tasks/ratelimit.py) within a
        # second, not a web worker hung on a silent network.
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    },
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / ".cache" / "static"
# Without collectstatic (local runs, tests) WhiteNoise serves straight from the app folders.
WHITENOISE_USE_FINDERS = True
WHITENOISE_AUTOREFRESH = DEBUG
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

LOG_LEVEL = env("LOG_LEVEL", "INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "INFO"}},
}
