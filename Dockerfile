# One image for every process of the platform (web, relay, consumers, scheduler, celery, the
# migrate Job); the Helm chart in helm/todo-platform picks the command. It holds the runtime
# dependencies only (requirements/runtime.txt): no test, benchmark or development package. Build:
#   make image                              # buildah here (scripts/image.sh), no Docker engine needed
#   docker build -t todo-platform:0.1.0 .   # or any OCI builder
ARG PYTHON_IMAGE=python:3.11-slim

# --- builder: the pinned dependency tree in a virtualenv ------------------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements/runtime.txt /tmp/runtime.txt
# Every dependency ships a manylinux wheel (psycopg[binary] brings its own libpq), so no compiler
# or -dev package is needed; the lock's hashes are checked for every file.
RUN /opt/venv/bin/pip install --require-hashes --only-binary :all: -r /tmp/runtime.txt

# --- runtime: the virtualenv and the code, as a non-root user --------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DJANGO_SETTINGS_MODULE=todo_project.settings
# A fixed numeric id, so that Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
WORKDIR /app
COPY --from=builder /opt/venv /opt/venv
# The code stays owned by root: the app user can read it, not change it.
COPY . .
# Static files of the admin and the API docs, served by WhiteNoise from the image.
RUN SECRET_KEY=collectstatic-only python manage.py collectstatic --noinput -v 0 \
    && python -m compileall -q /app
USER 10001:10001
EXPOSE 8000 9100
# The web process, as in the Procfile and the chart: gunicorn with one uvicorn worker per usable core
# (the container's CPU limit; WEB_WORKERS overrides), see gunicorn.conf.py.
CMD ["gunicorn", "-c", "gunicorn.conf.py", "--bind", "0.0.0.0:8000"]
