# syntax=docker/dockerfile:1
# avatar-worker: one image for the worker (`run`, the default), the simulator (`sim`) and the
# CLI (`enqueue`, `doctor`, `conversations end --all-active`, ...).
#
#   docker build -t avatar-worker .
#   docker run --rm -e TAVUS_API_KEY=... -e AMQP_URL=amqp://... avatar-worker
#
# Stopping: SIGTERM starts a drain: the worker stops taking jobs and lets live sessions run for up
# to WORKER_DRAIN_TIMEOUT_S (default 1800 s), then ends the rest. Give it that long plus a margin
# to end sessions and release their conversations (60 s), or live calls are cut by SIGKILL:
#   docker stop -t 1860 CONTAINER             (docker's default is only 10 s)
#   compose: stop_grace_period: 1860s         Kubernetes: terminationGracePeriodSeconds: 1860
# A second SIGTERM ends every session at once.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---- builder: a venv with the locked dependencies and the project ------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the project metadata alone (no packages yet), so a code change does not
# reinstall them. `-c requirements.lock` pins every version without installing the dev tools in it.
COPY pyproject.toml requirements.lock README.md ./
RUN pip install -c requirements.lock .
COPY tavus ./tavus
COPY pipelines ./pipelines
COPY worker ./worker
RUN pip install --no-deps --force-reinstall -c requirements.lock . \
    && avatar-worker --help > /dev/null

# ---- runtime: the venv only, as a non-root user ------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 worker \
    && useradd --system --uid 10001 --gid worker --home-dir /app --shell /usr/sbin/nologin worker
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LOG_FORMAT=json \
    WORKER_STATUS_PORT=8081
WORKDIR /app
USER 10001:10001
# /healthz, /readyz, /status and /metrics (worker.ops.status).
EXPOSE 8081
STOPSIGNAL SIGTERM
# Liveness from /healthz with the standard library (no curl in the image): 503 = a restart helps.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('WORKER_STATUS_PORT', '8081'), timeout=4)"]
ENTRYPOINT ["avatar-worker"]
CMD ["run"]
