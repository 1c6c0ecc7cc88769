# Shared set-up for scripts/test and scripts/demo: a Python 3.11+ virtualenv with the project and
# its locked dependencies, and a reachable RabbitMQ (started or installed locally when possible).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="$ROOT/.venv"

find_python() {
  for candidate in python3.13 python3.12 python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "error: Python 3.11 or newer is needed (found none on PATH)" >&2
  return 1
}

ensure_venv() {
  local stamp="$VENV/.installed" want
  want="$(cat pyproject.toml requirements.lock 2>/dev/null | sha256sum | cut -c1-16)"
  if [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
    return 0
  fi
  local python; python="$(find_python)"
  echo "setting up $VENV with $($python --version) (locked dependencies)..." >&2
  [ -x "$VENV/bin/python" ] || "$python" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
  local constraints=()
  [ -f requirements.lock ] && constraints=(-c requirements.lock)
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${constraints[@]}" -e '.[dev,pipecat]'
  echo "$want" > "$stamp"
}

broker_port_open() {
  "$VENV/bin/python" - "$1" <<'PY'
import socket, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1])
try:
    socket.create_connection((u.hostname or "127.0.0.1", u.port or 5672), timeout=2).close()
except OSError:
    sys.exit(1)
PY
}

# rabbitmq-server from Debian's packages when it is missing (root with apt-get only).
install_rabbitmq_server() {
  command -v rabbitmq-server >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] || return 1
  echo "installing rabbitmq-server (Debian package)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
}

ensure_broker() {
  local url="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
  broker_port_open "$url" && return 0
  if [ -n "${AMQP_URL:-}" ]; then
    echo "error: RabbitMQ at AMQP_URL is not reachable; start it or unset AMQP_URL" >&2; return 1
  fi
  install_rabbitmq_server || true
  if command -v rabbitmq-server >/dev/null 2>&1; then
    echo "starting a local RabbitMQ (rabbitmq-server -detached)..." >&2
    rabbitmq-server -detached >/dev/null 2>&1 || true
    for _ in $(seq 1 60); do broker_port_open "$url" && return 0; sleep 1; done
  fi
  echo "error: no RabbitMQ at $url. Start one (rabbitmq-server -detached, or" >&2
  echo "  docker run -d -p 5672:5672 rabbitmq:3-management) or set AMQP_URL." >&2
  return 1
}

# A local 3-node RabbitMQ cluster for tests/cluster (scripts/cluster.sh, next to the broker above),
# its node URLs exported as AVATAR_CLUSTER_URLS; set that yourself to use your own cluster. Where it
# cannot start, the cluster tests fail and say how to get one.
ensure_cluster() {
  [ -n "${AVATAR_CLUSTER_URLS:-}" ] && return 0
  install_rabbitmq_server || true
  local urls
  urls="$("$ROOT/scripts/cluster.sh" start)" || return 1
  export AVATAR_CLUSTER_URLS="$urls"
}
