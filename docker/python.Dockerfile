# A Debian base with Python 3.11 and venv, for building the worker image where python:3.11-slim
# cannot be pulled (CI: no image registry). Debian's python3 is /usr/bin/python3 (no `python`).
#   scripts/docker.sh build python
ARG DEBIAN_IMAGE=debian:bookworm-slim
FROM ${DEBIAN_IMAGE}
# Debian stable's current packages, not pinned versions: these images only serve the tests.
# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        python3 python3-venv ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -c 'import sys, venv; assert sys.version_info[:2] == (3, 11), sys.version'
