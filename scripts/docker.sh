#!/usr/bin/env bash
# Docker for the tests: install and start the engine where we may, and build the images the tests
# use from local parts (no image registry is reachable in CI). Each image carries the hash of its
# inputs in a label and is rebuilt only when they change.
#
#   scripts/docker.sh build all|debian-bookworm|debian-trixie|python|rabbitmq3|rabbitmq4|worker
#   scripts/docker.sh name python|rabbitmq3|rabbitmq4|worker    # that image's local name
#   scripts/docker.sh ensure          # install/start dockerd (root, Debian), then build all
# Sourced by scripts/test for ensure_docker, ensure_ci_images and rabbitmq4_pass.
set -euo pipefail
AW_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
AW_LABEL=org.avatar-worker.inputs
AW_DEBIAN_MIRROR="${AW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
AW_DOCKERD_LOG="${AW_DOCKERD_LOG:-/var/log/avatar-dockerd.log}"
# BuildKit (build secrets) needs the 20.10 client on this machine: the newer one first on PATH has
# no buildx and falls back to the legacy builder.
AW_DOCKER="$(command -v /usr/bin/docker || command -v docker || echo docker)"

# The images the tests and compose use here; the defaults elsewhere are the public ones.
AW_IMAGE_DEBIAN=avatar-ci/debian
AW_IMAGE_PYTHON=avatar-ci/python:3.11-bookworm
AW_IMAGE_RABBITMQ3=avatar-ci/rabbitmq:3-bookworm
AW_IMAGE_RABBITMQ4=avatar-ci/rabbitmq:4-trixie
AW_IMAGE_WORKER=avatar-worker:ci

aw_log() { echo "docker: $*" >&2; }

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }

close_fds_above_2() {  # in this (sub)shell
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd="${fd##*/}"
    [ "$fd" -gt 2 ] && eval "exec $fd>&-"
  done
  return 0
}

ensure_docker() {
  docker_answers && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker-compose >/dev/null 2>&1 ||
       ! command -v debootstrap >/dev/null 2>&1; then
      aw_log "installing docker.io, docker-compose and debootstrap (Debian packages)..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq docker.io docker-compose debootstrap >/dev/null
      # The 20.10 client is there only now: AW_DOCKER, chosen when this file was sourced, had none.
      AW_DOCKER="$(command -v /usr/bin/docker || command -v docker || echo docker)"
    fi
  fi
  if command -v dockerd >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    aw_log "starting dockerd (log: $AW_DOCKERD_LOG)..."
    # With stdio only: a descriptor the caller holds open (the lock of `flock LOCK scripts/...`, a
    # pipe) must not live on in the daemon, where it would hold the lock for good.
    (close_fds_above_2; exec setsid dockerd >"$AW_DOCKERD_LOG" 2>&1 < /dev/null) &
    for _ in $(seq 1 60); do docker_answers && return 0; sleep 0.5; done
    aw_log "error: dockerd did not answer within 30 s: $(tail -n 3 "$AW_DOCKERD_LOG" | tr '\n' ' ')"
    return 1
  fi
  aw_log "error: no Docker engine answers and this user cannot start one (needs root and apt-get)"
  return 1
}

image_inputs() { docker image inspect -f "{{ index .Config.Labels \"$AW_LABEL\" }}" "$1" 2>/dev/null || true; }

# A hash of the named files (or directories) and extra words, such as a base image's id.
inputs_hash() {
  local words="$1"; shift
  { echo "$words"; find "$@" -type f -not -path '*/__pycache__/*' -not -name '*.pyc' | LC_ALL=C sort |
      xargs sha256sum; } | sha256sum | cut -c1-20
}

image_id() { docker image inspect -f '{{ .Id }}' "$1"; }

is_current() {
  if [ "$(image_inputs "$1")" = "$2" ]; then aw_log "$1 is current (inputs $2)"; return 0; fi
  return 1
}

build_debian() {  # a minimal Debian root from debootstrap, imported as an image
  local suite="$1" name="$AW_IMAGE_DEBIAN:$1" hash dir
  hash="$(echo "debootstrap --variant=minbase $suite $AW_DEBIAN_MIRROR v2" | sha256sum | cut -c1-20)"
  is_current "$name" "$hash" && return 0
  command -v debootstrap >/dev/null 2>&1 || { aw_log "error: debootstrap is not installed"; return 1; }
  dir="$(mktemp -d /var/tmp/avatar-debootstrap.XXXXXX)"
  aw_log "debootstrap --variant=minbase $suite (about 30 s)..."
  if ! debootstrap --variant=minbase "$suite" "$dir" "$AW_DEBIAN_MIRROR" >"$dir.log" 2>&1; then
    aw_log "error: debootstrap $suite failed: $(tail -n 3 "$dir.log" | tr '\n' ' ')"
    rm -rf "$dir" "$dir.log"; return 1
  fi
  rm -rf "$dir"/var/cache/apt/* "$dir"/var/lib/apt/lists/*  # 80 MB; images run apt-get update
  # (Failures are checked by hand: `set -e` does not apply in a function called from `||`.)
  tar -C "$dir" -c . | docker import --change "LABEL $AW_LABEL=$hash" --change 'CMD ["bash"]' \
    - "$name" >/dev/null || { aw_log "error: docker import of $suite failed"; rm -rf "$dir"; return 1; }
  rm -rf "$dir" "$dir.log"
  aw_log "built $name"
}

build_from() {  # NAME DOCKERFILE BASE: docker/*.Dockerfile on a local Debian image
  local name="$1" dockerfile="$2" base="$3" hash
  hash="$(inputs_hash "$(image_id "$base")" "$AW_ROOT/docker/$dockerfile" "$AW_ROOT/docker/rabbitmq.conf")" ||
    return 1
  is_current "$name" "$hash" && return 0
  aw_log "building $name from docker/$dockerfile on $base..."
  DOCKER_BUILDKIT=1 "$AW_DOCKER" build -q -f "$AW_ROOT/docker/$dockerfile" \
    --build-arg "DEBIAN_IMAGE=$base" --label "$AW_LABEL=$hash" -t "$name" "$AW_ROOT/docker" \
    >/dev/null || { aw_log "error: building $name failed (above)"; return 1; }
  aw_log "built $name"
}

pip_setting() {  # pip's own configuration value (global.cert, global.index-url), or nothing
  "${AW_PIP:-python3}" -m pip config get "global.$1" 2>/dev/null || true
}

build_worker() {  # the real Dockerfile, on the local Debian/Python base
  local name="$AW_IMAGE_WORKER" hash cert index args=()
  hash="$(cd "$AW_ROOT" && inputs_hash "$(image_id "$AW_IMAGE_PYTHON")" Dockerfile .dockerignore \
    pyproject.toml requirements.lock README.md tavus pipelines worker)"
  is_current "$name" "$hash" && return 0
  # The host's CA bundle (a TLS-inspecting proxy) reaches pip as a build secret: it is never
  # written into a layer. A configured http(s) index goes in as a builder-stage build arg.
  cert="${PIP_CERT:-$(pip_setting cert)}"
  [ -n "$cert" ] && [ -f "$cert" ] && args+=(--secret "id=pip_cert,src=$cert")
  index="${PIP_INDEX_URL:-$(pip_setting index-url)}"
  case "$index" in http*) args+=(--build-arg "PIP_INDEX_URL=$index") ;; esac
  aw_log "building $name from the Dockerfile on $AW_IMAGE_PYTHON (a few minutes the first time)..."
  DOCKER_BUILDKIT=1 "$AW_DOCKER" build -q "${args[@]}" \
    --build-arg "PYTHON_IMAGE=$AW_IMAGE_PYTHON" --label "$AW_LABEL=$hash" -t "$name" "$AW_ROOT" \
    >/dev/null || { aw_log "error: building $name from the Dockerfile failed (above)"; return 1; }
  aw_log "built $name ($(docker image inspect -f '{{ .Size }}' "$name" | awk '{printf "%.0f MB", $1/1e6}'))"
}

build_image() {
  case "$1" in
    debian-bookworm) build_debian bookworm ;;
    debian-trixie) build_debian trixie ;;
    python) build_image debian-bookworm && build_from "$AW_IMAGE_PYTHON" python.Dockerfile "$AW_IMAGE_DEBIAN:bookworm" ;;
    rabbitmq3) build_image debian-bookworm && build_from "$AW_IMAGE_RABBITMQ3" rabbitmq.Dockerfile "$AW_IMAGE_DEBIAN:bookworm" ;;
    rabbitmq4) build_image debian-trixie && build_from "$AW_IMAGE_RABBITMQ4" rabbitmq.Dockerfile "$AW_IMAGE_DEBIAN:trixie" ;;
    worker) build_image python && build_worker ;;
    all) build_image rabbitmq3 && build_image rabbitmq4 && build_image worker &&
      docker image prune -f --filter "label=$AW_LABEL" >/dev/null ;;  # the replaced ones
    *) aw_log "error: unknown image '$1'"; return 2 ;;
  esac
}

# scripts/test: Docker up and the images built, and the tests told which ones to use.
ensure_ci_images() {
  ensure_docker || return 1
  local started=$SECONDS
  build_image all || return 1
  export AVATAR_TEST_RABBITMQ_IMAGE="${AVATAR_TEST_RABBITMQ_IMAGE:-$AW_IMAGE_RABBITMQ3}"
  export AVATAR_TEST_WORKER_IMAGE="${AVATAR_TEST_WORKER_IMAGE:-$AW_IMAGE_WORKER}"
  aw_log "images ready in $((SECONDS - started)) s"
}

# scripts/test: the broker-facing tests again against RabbitMQ 4 (a testcontainers broker), when
# the run is the whole suite (only options given, as CI does).
rabbitmq4_pass() {
  local arg
  for arg in "$@"; do case "$arg" in -*) ;; *) return 0 ;; esac; done
  [ "${AVATAR_TEST_RABBITMQ4:-1}" = 0 ] && return 0
  local tests=(tests/worker/test_contract.py tests/worker/test_intake.py tests/reliability)
  local cluster=()
  # The cluster tests too, on a RabbitMQ 4 cluster in containers, once their conftest takes its
  # cluster script from AVATAR_CLUSTER_SCRIPT (scripts/docker-cluster.sh has cluster.sh's commands).
  if grep -q AVATAR_CLUSTER_SCRIPT "$AW_ROOT/tests/cluster/conftest.py" 2>/dev/null; then
    tests+=(tests/cluster)
    cluster=(AVATAR_CLUSTER_SCRIPT="$AW_ROOT/scripts/docker-cluster.sh"
             AVATAR_CLUSTER_IMAGE="$AW_IMAGE_RABBITMQ4")
  fi
  echo "--- the broker-facing tests against RabbitMQ 4 ($AW_IMAGE_RABBITMQ4) ---" >&2
  if ! docker_answers; then
    echo "error: the RabbitMQ 4 pass needs Docker, which does not answer (see above)" >&2
    return 1
  fi
  # The broker is this pass's own container, so the test that restarts it may run.
  (cd "$AW_ROOT" && env -u AMQP_URL -u AVATAR_CLUSTER_URLS "${cluster[@]}" \
    AVATAR_TEST_RABBITMQ_IMAGE="$AW_IMAGE_RABBITMQ4" AVATAR_TEST_RABBITMQ_MAJOR=4 \
    RELIABILITY_BROKER_RESTART=1 "$AW_ROOT/.venv/bin/pytest" "$@" "${tests[@]}")
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    build) build_image "${2:-all}" ;;
    name)  # the local image `build WHICH` makes
      case "${2:-}" in
        python) echo "$AW_IMAGE_PYTHON" ;; rabbitmq3) echo "$AW_IMAGE_RABBITMQ3" ;;
        rabbitmq4) echo "$AW_IMAGE_RABBITMQ4" ;; worker) echo "$AW_IMAGE_WORKER" ;;
        *) aw_log "error: no image '${2:-}'"; exit 2 ;;
      esac ;;
    ensure) ensure_ci_images ;;
    *) echo "usage: scripts/docker.sh build WHICH | name WHICH | ensure (see its header)" >&2; exit 2 ;;
  esac
fi
