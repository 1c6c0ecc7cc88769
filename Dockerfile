# avatar-worker: one image for the worker (`run`, the default), the simulator (`sim`) and the
# CLI (`enqueue`, `doctor`, `conversations end --all-active`, ...).
#
#   docker build -t avatar-worker .           (BuildKit: Docker 23+, or DOCKER_BUILDKIT=1)
#   docker run --rm -e TAVUS_API_KEY=... -e AMQP_URL=amqp://... avatar-worker
#
# Build arguments and secrets (all optional):
#   PYTHON_IMAGE     the base, default python:3.11-slim-bookworm; any Debian/Ubuntu image with
#                    python3.11 and its venv module works (CI: Debian bookworm's python3 +
#                    python3-venv, built locally by scripts/docker.sh)
#   PIP_INDEX_URL    a package index mirror (builder stage only)
#   --secret id=pip_cert,src=/path/ca-bundle.crt   a CA bundle for pip behind a TLS-inspecting
#                    proxy; mounted for the install only, never stored in a layer
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
ARG PIP_INDEX_URL
# python3, not python: Debian's own Python has no `python` command. The venv's python is the
# base's, so the runtime stage (same base) runs it.
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
# Dependencies first, from the project metadata alone (no packages yet), so a code change does not
# reinstall them. `-c requirements.lock` pins every version without installing the dev tools in it.
# `.[pipecat]`: the worker with the pipecat_daily pipeline (pip only warns while the extra is not
# split out yet, and installs the same).
# (An empty README stands in for the real one here, so editing the README does not either.)
COPY pyproject.toml requirements.lock ./
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    touch README.md && pip install -c requirements.lock ".[pipecat]"
COPY README.md ./
COPY tavus ./tavus
COPY pipelines ./pipelines
COPY worker ./worker
RUN --mount=type=secret,id=pip_cert \
    if [ -s /run/secrets/pip_cert ]; then export PIP_CERT=/run/secrets/pip_cert; fi; \
    pip install --no-deps --force-reinstall -c requirements.lock . \
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
