# The two commands people need: `make run` and `make test`. Everything else is a step of theirs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# Procfile commands (uvicorn, python, celery) resolve to the project's virtualenv.
export PATH := $(abspath $(VENV))/bin:$(PATH)
# Production settings: everything make starts is local development (a fixed SECRET_KEY, plain http);
# with DEBUG off Django refuses to start without SECRET_KEY and redirects to https. DEBUG=false wins.
export DEBUG ?= true

.PHONY: run test test-fast stop infra stores install migrate topics lock status tools helm-lint browser faults drill bench js-tools image smoke-image kube-tools kube daprd connect-jars debezium-drill

# Python dependencies, hash-locked in three nested sets (requirements/*.in -> *.txt, `make lock`):
# runtime.txt (the image) within test.txt (make test, make run) within bench.txt (make bench, faults,
# drill). The virtualenv gets the widest one, once per change of any lock.
LOCKS := requirements/runtime.txt requirements/test.txt requirements/bench.txt
install: $(INSTALLED)
$(INSTALLED): $(LOCKS)
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "error: Python 3.11 or newer is needed (found $$($(PYTHON) --version 2>&1)). Install python3.11 or set PYTHON=/path/to/python3.11." >&2; exit 1; }
	@echo "==> python: creating $(VENV) and installing the locked dependencies (first run only)…"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV) || { echo "error: could not create a virtualenv: apt-get install python3-venv" >&2; exit 1; }
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements/bench.txt
	@touch $(INSTALLED)

# Kafka, PostgreSQL and Redis: reused when running, provisioned and started when not.
infra: install
	@bash scripts/infra.sh up

# PostgreSQL and Redis alone (the fast tests need no Kafka).
stores: install
	@bash scripts/infra.sh stores

migrate: infra
	@echo "==> django: applying migrations…"
	@$(PY) manage.py migrate --noinput -v 0

topics: infra
	@echo "==> kafka: creating topics…"
	@$(PY) manage.py create_topics

# The whole system in the foreground under supervisord (scripts/supervise.py): a process that exits
# is restarted; Ctrl-C stops every process it started.
run: migrate topics
	@mkdir -p .cache/static  # WhiteNoise's STATIC_ROOT; files are served from the apps until collectstatic fills it
	@echo "==> starting the processes of Procfile (web on http://127.0.0.1:$${WEB_PORT:-8000}, caught e-mails on http://127.0.0.1:$${MAIL_CATCHER_HTTP_PORT:-8025}); Ctrl-C stops them"
	@exec $(PY) scripts/supervise.py run Procfile

# Debian's Chromium for the browser tests (Playwright drives it; it cannot download browsers here).
browser:
	@command -v chromium >/dev/null || { echo "==> installing Debian's chromium for the browser tests…"; \
		[ "$$(id -u)" = 0 ] || { echo "error: chromium is missing; run as root or: sudo apt-get install chromium" >&2; exit 1; }; \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium); }

# axe-core for the browser tests' accessibility check (package-lock.json pins it), installed once per lock change.
js-tools: node_modules/.installed
node_modules/.installed: package-lock.json
	@command -v npm >/dev/null || { echo "error: npm is missing for the accessibility check: apt-get install npm" >&2; exit 1; }
	@echo "==> npm: installing the pinned test tools (axe-core)…"
	@npm ci --ignore-scripts --no-audit --no-fund --silent
	@touch $@

# Command-line tools of the tests, built from the Go module proxy once per version into the build cache
# outside the clone (scripts/build_cache.sh; TODO_BUILD_CACHE, default /var/cache/todo-platform): helm
# (linked as .cache/bin/helm), and for the chart on a real API server kine and kube-apiserver.
tools:
	@bash scripts/tools.sh

kube-tools:
	@bash scripts/kube.sh build >/dev/null

# The chart on a real kube-apiserver (on kine, a temporary server of its own): every values profile
# installed, upgraded, rolled back and uninstalled, each step checked against the server; prints a table.
kube: tools kube-tools install
	@bash scripts/kube.sh run $(KUBE_ARGS)

# A real Dapr sidecar for the EVENT_TRANSPORT=dapr end-to-end tests: upstream daprd with only its Kafka
# pub/sub component, built once per version from the Go module proxy (scripts/daprd.sh; ~10 min cold,
# caches and binary in $${TODO_BUILD_CACHE:-/var/cache/todo-platform}, linked as .cache/bin/daprd).
daprd:
	@bash scripts/daprd.sh

# The chart alone: lint each values profile (the tests also render and validate every document).
helm-lint: tools
	@for values in helm/todo-platform/ci/*-values.yaml; do .cache/bin/helm lint --strict --quiet helm/todo-platform -f $$values || exit 1; done

# The Kafka Connect worker of OUTBOX_PUBLISHER=debezium: Connect, Debezium and our partitioner, fetched and
# built once into .cache/connect/libs (Maven's cache in ~/.m2); make run's connect process fetches them when selected.
connect-jars:
	@bash scripts/connect.sh jars

# `image`: tests/deploy/test_image.py runs every process from the image; `kube-tools`: tests/helm/test_kube.py;
# `daprd`: tests/deploy/test_daprd.py; `connect-jars`: tests/deploy/test_debezium.py.
test: infra tools kube-tools daprd connect-jars browser js-tools image
	@bash scripts/infra.sh kafka-jars
	@echo "==> running the test suite against the real Kafka, PostgreSQL and Redis…"
	@$(PY) -m pytest $(PYTEST_ARGS)

# The fast tier: every test that is not e2e (tests/conftest.py), on PostgreSQL and Redis; no Kafka,
# no processes, no browser. Two pytest-xdist workers, each with its own test database (a copy of one
# migrated template, testing/db.py) and namespaces. It leaves out the API fuzz (broker-free, but a
# minute long; its module builds the whole API schema when imported, so it is not even collected).
FAST_WORKERS ?= 2
FAST_TIER_LEAVES_OUT := --ignore=tests/todo_project/test_api_fuzz.py
test-fast: stores
	@echo "==> running the fast tests (no Kafka, no processes) against PostgreSQL and Redis…"
	@$(PY) -m pytest -m "not e2e" $(FAST_TIER_LEAVES_OUT) -n $(FAST_WORKERS) $(PYTEST_ARGS)

# Fault drills: kill -9 and restart each process, the broker and PostgreSQL under load (all PRIVATE
# instances: a Kafka broker and a PostgreSQL cluster of its own), then check nothing was lost.
faults: infra
	@$(PY) -u bench/faults.py $(FAULTS_ARGS)

# Hostile drill: normal users' changes while an attacker tries every bad input at every door (REST, sign-in,
# chat, MCP, /dapr/, WebSocket, raw Kafka), on PRIVATE Kafka and PostgreSQL; prints each attack's answer, the
# checks that nobody else was affected, and the legitimate traffic's freshness under attack vs without.
drill: infra
	@$(PY) -u bench/drill.py $(DRILL_ARGS)

# Debezium next to relay_outbox on PRIVATE PostgreSQL (logical decoding) and the shared Kafka: drain rate of one
# backlog (default 50,000 rows), and a kill -9 drill of the Connect worker and PostgreSQL.
debezium-drill: infra connect-jars
	@$(PY) -u bench/debezium_drain.py $(DEBEZIUM_DRILL_ARGS)

# Every benchmark in one run (write path, freshness, CPU per change, consumers, reminders, memory) on
# PRIVATE PostgreSQL, Kafka and Redis (the jars from `make infra`): prints a table, writes
# bench/results.json and bench/results.png. BASELINE=<commit>: that commit measured too, in the same
# run (a temporary git worktree), each figure as after/before.
bench: infra
	@$(PY) -u bench/run_all.py $(if $(BASELINE),--baseline $(BASELINE)) $(BENCH_ARGS)

# Stop the background infrastructure that `make infra` started (servers we merely reused stay up).
stop:
	@bash scripts/infra.sh down

status:
	@bash scripts/infra.sh status

# Re-pin every set after editing a requirements/*.in, in order (each set is constrained by the one it
# contains). Pins already in a lock are kept; `make lock LOCK_ARGS=--upgrade` (or
# `--upgrade-package NAME`) moves them. uv resolves for Linux and Python 3.11 whatever the host runs.
lock: install
	@for set in runtime test bench; do \
		$(VENV)/bin/uv pip compile --quiet --generate-hashes --python-version 3.11 --python-platform linux \
			--custom-compile-command "make lock" $(LOCK_ARGS) requirements/$$set.in -o requirements/$$set.txt || exit 1; \
	done
	@echo "requirements/{runtime,test,bench}.txt updated"

# The container image of every process (Dockerfile, runtime set only), built with buildah; the base
# is pulled, or made from Debian packages where no registry serves it (scripts/image.sh).
# Its name: $$IMAGE, by default localhost/todo-platform:dev (scripts/image.sh).
image:
	@bash scripts/image.sh build

# Every process of the Procfile from that image under podman, on the host's Kafka, PostgreSQL and
# Redis (a scratch database and topic namespace), and the end-to-end checks against them.
smoke-image: infra image
	@$(PY) -m pytest -p no:cacheprovider tests/deploy/test_image.py $(PYTEST_ARGS)
