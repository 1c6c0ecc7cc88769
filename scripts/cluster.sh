#!/usr/bin/env bash
# A local 3-node RabbitMQ cluster for the cluster tests, next to the default node (5672/25672/15672,
# never touched): nodes avatar-5701..5703@localhost on 127.0.0.1:5701..5703 (Erlang distribution on
# 25701..25703), state under $AVATAR_CLUSTER_DIR (default /tmp/avatar-cluster).
#
#   scripts/cluster.sh start        start it, or reuse a running healthy one; prints the URLs
#   scripts/cluster.sh stop         stop every node (data kept: the next start is quicker)
#   scripts/cluster.sh destroy      stop every node and delete its data
#   scripts/cluster.sh status       one line per node: up or down
#   scripts/cluster.sh urls         the AMQP_URL list: amqp://guest:guest@127.0.0.1:5701/,...
#   scripts/cluster.sh kill N       SIGKILL node N (1-3); it stays down until `restart N`
#   scripts/cluster.sh restart N    start node N again with its data; it rejoins the cluster
#   scripts/cluster.sh recreate N   replace node N by an empty one (the others forget the old one;
#                                   quorum queues get a member on the new one)
#   scripts/cluster.sh ctl N ARGS   rabbitmqctl ARGS against node N (list_queues, close_connection...)
#
# Needs rabbitmq-server (scripts/test installs it on Debian/Ubuntu when run as root) and root or
# the rabbitmq user: the nodes run as rabbitmq, so they share its Erlang cookie.
set -euo pipefail
# The system's rabbitmqctl first: the test run may have put one for a broker container on PATH.
export PATH="/usr/sbin:/usr/bin:/sbin:/bin:$PATH"

DIR="${AVATAR_CLUSTER_DIR:-/tmp/avatar-cluster}"
BASE_PORT="${AVATAR_CLUSTER_BASE_PORT:-5700}"  # node N listens on BASE_PORT+N
NODES=(1 2 3)
START_TIMEOUT_S=90
COOKIE=~rabbitmq/.erlang.cookie

die() { echo "cluster.sh: error: $*" >&2; exit 1; }
say() { echo "cluster.sh: $*" >&2; }

node_name() { echo "avatar-$(node_port "$1")@localhost"; }  # unique per port: clusters can coexist
node_port() { echo $((BASE_PORT + $1)); }
node_dir() { echo "$DIR/n$1"; }
node_url() { echo "amqp://guest:guest@127.0.0.1:$(node_port "$1")/"; }

urls() {
  local out="" n
  for n in "${NODES[@]}"; do out+="${out:+,}$(node_url "$n")"; done
  echo "$out"
}

check_node_arg() {
  [[ "${1:-}" =~ ^[1-3]$ ]] || die "name a node: 1, 2 or 3 (got '${1:-}')"
}

check_prerequisites() {
  command -v rabbitmq-server >/dev/null 2>&1 && command -v rabbitmqctl >/dev/null 2>&1 ||
    die "rabbitmq-server is not installed. Install it (Debian/Ubuntu, as root: apt-get install" \
        "rabbitmq-server; scripts/test does this) and run scripts/cluster.sh start again."
  id rabbitmq >/dev/null 2>&1 || die "there is no 'rabbitmq' user: install the rabbitmq-server package"
  local me; me="$(id -u)"
  [ "$me" = 0 ] || [ "$me" = "$(id -u rabbitmq)" ] ||
    die "run it as root or as the rabbitmq user (the nodes run as rabbitmq, with its cookie)"
}

# The environment of node N: its name, ports, config, data and logs, nothing from the default node.
node_env() {
  local n="$1" d; d="$(node_dir "$1")"
  echo RABBITMQ_NODENAME="$(node_name "$n")" \
    RABBITMQ_NODE_PORT="$(node_port "$n")" \
    RABBITMQ_DIST_PORT=$((BASE_PORT + 20000 + n)) \
    RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf" \
    RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config" \
    RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins" \
    RABBITMQ_MNESIA_BASE="$d/mnesia" \
    RABBITMQ_LOG_BASE="$d/log" \
    RABBITMQ_PID_FILE="$d/pid" \
    ERL_EPMD_ADDRESS=127.0.0.1
}

# rabbitmqctl against node N (the Debian wrapper runs it as the rabbitmq user when we are root).
ctl() {
  local n="$1"; shift
  # shellcheck disable=SC2046
  env $(node_env "$n") timeout 60 rabbitmqctl -q -n "$(node_name "$n")" "$@" </dev/null
}

write_config() {
  local n="$1" d; d="$(node_dir "$1")"
  mkdir -p "$d/mnesia" "$d/log"
  cat >"$d/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(node_port "$n")
cluster_partition_handling = pause_minority
log.file.level = warning
log.console = false
EOF
  echo "[]." >"$d/advanced.config"
  echo "[]." >"$d/enabled_plugins"
  write_env_file "$n"
  if [ "$(id -u)" = 0 ]; then chown -R rabbitmq:rabbitmq "$d"; fi
}

# The node's Erlang VM: from its pid file, or (a VM an earlier run left without one, say one stuck
# rejoining) the beam.smp whose environment names the node.
beam_pid() {
  local pid f
  pid="$(cat "$(node_dir "$1")/pid" 2>/dev/null || true)"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "$pid"; return 0; fi
  for f in $(grep -lsz "^RABBITMQ_NODENAME=$(node_name "$1")\$" /proc/[0-9]*/environ); do
    pid="${f#/proc/}"; pid="${pid%/environ}"
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = beam.smp ]; then echo "$pid"; return 0; fi
  done
  echo ""
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

is_up() {
  local pid; pid="$(beam_pid "$1")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && port_open "$(node_port "$1")"
}

# The node's rabbitmq-env.conf (sourced by RabbitMQ's start script, after the Debian wrapper's
# `su rabbitmq` has reset the soft limit on open files to 1024): the soft limit up to the hard one.
# At 1024, RabbitMQ 3.x's file handle cache (limit 927) runs out at about 240 quorum queues (about
# 3.8 handles each on every node), and the node stops accepting connections, without a log line.
write_env_file() {
  echo 'ulimit -S -n "$(ulimit -H -n)" 2>/dev/null || true' >"$(node_dir "$1")/rabbitmq-env.conf"
}

start_node() {
  local n="$1"
  if is_up "$n"; then return 0; fi
  [ -f "$(node_dir "$n")/rabbitmq.conf" ] || write_config "$n"
  write_env_file "$n"  # also for the nodes of an earlier version of this script
  rm -f "$(node_dir "$n")/pid"
  # shellcheck disable=SC2046
  env $(node_env "$n") rabbitmq-server -detached </dev/null >>"$(node_dir "$n")/start.out" 2>&1 ||
    true
}

wait_up() {
  local n="$1" waited=0
  until is_up "$n"; do
    local pid; pid="$(beam_pid "$n")"
    if [ "$waited" -ge 5 ] && [ -n "$pid" ] && ! kill -0 "$pid" 2>/dev/null; then
      say "node $n ($(node_name "$n")) exited while starting; its log:"
      tail -n 5 "$(node_dir "$n")/start.out" >&2 2>/dev/null || true
      return 1
    fi
    if [ "$waited" -ge "$START_TIMEOUT_S" ]; then
      say "node $n ($(node_name "$n")) did not come up in ${START_TIMEOUT_S} s; its log:"
      tail -n 20 "$(node_dir "$n")"/log/*.log "$(node_dir "$n")/start.out" >&2 2>/dev/null || true
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
}

running_nodes() {
  ctl "$1" cluster_status --formatter json 2>/dev/null |
    grep -o '"running_nodes":\[[^]]*\]' | grep -o 'avatar-[0-9]*@localhost' || true
}

is_healthy() {
  local n
  for n in "${NODES[@]}"; do is_up "$n" || return 1; done
  [ "$(running_nodes 1 | sort -u | wc -l)" -eq "${#NODES[@]}" ]
}

# Node N joins the cluster of node `$2` (default 1); the CLI's chatter goes to the node's join.out.
join() {
  local n="$1" seed="${2:-1}" out; out="$(node_dir "$1")/join.out"
  { ctl "$n" stop_app && ctl "$n" reset && ctl "$n" join_cluster "$(node_name "$seed")" &&
    ctl "$n" start_app; } >>"$out" 2>&1 || { tail -n 20 "$out" >&2; return 1; }
}

start() {
  check_prerequisites
  mkdir -p "$DIR"
  if is_healthy; then say "reusing the running cluster"; urls; return 0; fi
  local n
  if [ ! -f "$COOKIE" ]; then  # a fresh machine: the first node writes the cookie the others read
    start_node 1; wait_up 1 || die "node 1 did not start (see above)"
  fi
  local all_up=1
  for n in "${NODES[@]}"; do start_node "$n"; done
  for n in "${NODES[@]}"; do wait_up "$n" || { all_up=0; break; }; done
  if [ "$all_up" = 1 ]; then
    ctl 1 await_startup >/dev/null
    local members; members="$(running_nodes 1)"
    for n in "${NODES[@]:1}"; do
      grep -qx "$(node_name "$n")" <<<"$members" || join "$n" || true
    done
  fi
  # A node left broken by an earlier run (killed mid-write, or unable to rejoin): start over.
  if ! is_healthy; then
    say "the nodes did not form one cluster; starting from empty nodes"
    destroy
    for n in "${NODES[@]}"; do start_node "$n"; done
    for n in "${NODES[@]}"; do wait_up "$n" || die "node $n did not start (see above)"; done
    for n in "${NODES[@]:1}"; do join "$n"; done
    is_healthy || die "the nodes did not form one cluster; logs are under $DIR/n*/log"
  fi
  say "cluster up: $(running_nodes 1 | tr '\n' ' ')"
  urls
}

stop_node() {
  local n="$1" pid; pid="$(beam_pid "$n")"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  ctl "$n" stop >/dev/null 2>&1 || true
  local waited=0
  while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 30 ]; do sleep 1; waited=$((waited + 1)); done
  kill -9 "$pid" 2>/dev/null || true
}

stop() {
  local n pids=()
  for n in "${NODES[@]}"; do stop_node "$n" & pids+=($!); done
  wait "${pids[@]}"
}

destroy() {
  stop
  rm -rf "$DIR"
}

kill_node() {
  local n="$1" pid; pid="$(beam_pid "$n")"
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -9 "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  say "node $n ($(node_name "$n")) killed"
}

restart_node() {
  local n="$1"
  start_node "$n"
  wait_up "$n" || die "node $n did not start again (see above)"
  ctl "$n" await_startup >/dev/null
  say "node $n ($(node_name "$n")) is back"
}

recreate_node() {
  local n="$1" other
  kill_node "$n"
  for other in "${NODES[@]}"; do
    if [ "$other" != "$n" ] && is_up "$other"; then
      ctl "$other" forget_cluster_node "$(node_name "$n")" || true
      break
    fi
  done
  rm -rf "$(node_dir "$n")"
  start_node "$n"
  wait_up "$n" || die "node $n did not start (see above)"
  join "$n" "$other" || die "node $n could not join $(node_name "$other") (see above)"
  # Forgetting the old node took it out of every quorum queue: give each a member here again.
  # shellcheck disable=SC2046
  env $(node_env "$n") timeout 120 rabbitmq-queues -q -n "$(node_name "$n")" grow \
    "$(node_name "$n")" all </dev/null >>"$(node_dir "$n")/join.out" 2>&1 ||
    say "node $n: growing the quorum queues onto it failed (see $(node_dir "$n")/join.out)"
  say "node $n ($(node_name "$n")) replaced by an empty node"
}

status() {
  local n
  for n in "${NODES[@]}"; do
    if is_up "$n"; then state=up; else state=down; fi
    echo "$(node_name "$n") 127.0.0.1:$(node_port "$n") $state"
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  destroy) destroy ;;
  status) status ;;
  urls) urls ;;
  kill) check_node_arg "${2:-}"; kill_node "$2" ;;
  restart) check_prerequisites; check_node_arg "${2:-}"; restart_node "$2" ;;
  recreate) check_prerequisites; check_node_arg "${2:-}"; recreate_node "$2" ;;
  ctl) check_node_arg "${2:-}"; n="$2"; shift 2; ctl "$n" "$@" ;;
  *) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0" >&2; exit 2 ;;
esac
