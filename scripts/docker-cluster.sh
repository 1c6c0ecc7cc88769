#!/usr/bin/env bash
# A 3-node RabbitMQ cluster in Docker containers, with the command line of scripts/cluster.sh, so
# the cluster tests can run on another RabbitMQ than the machine's (RabbitMQ 4 from the trixie
# image scripts/docker.sh builds). The containers use the host's network, so nodes are named and
# reached as scripts/cluster.sh's are: avatar-PORT@localhost on 127.0.0.1:PORT (PORT = BASE_PORT+N,
# Erlang distribution on BASE_PORT+20000+N, the host's epmd), beside any other cluster.
#
#   scripts/docker-cluster.sh start|stop|destroy|status|urls|kill N|restart N|recreate N|ctl N ARGS
#   AVATAR_CLUSTER_IMAGE (default avatar-ci/rabbitmq:4-trixie), AVATAR_CLUSTER_BASE_PORT (5900)
set -euo pipefail

IMAGE="${AVATAR_CLUSTER_IMAGE:-avatar-ci/rabbitmq:4-trixie}"
BASE_PORT="${AVATAR_CLUSTER_BASE_PORT:-5900}"
PREFIX="aw-cluster-$BASE_PORT"
NODES=(1 2 3)
START_TIMEOUT_S=90
COOKIE="avatar-docker-cluster-cookie"

die() { echo "docker-cluster.sh: error: $*" >&2; exit 1; }
say() { echo "docker-cluster.sh: $*" >&2; }

container() { echo "$PREFIX-$1"; }
node_name() { echo "avatar-$(node_port "$1")@localhost"; }
node_port() { echo $((BASE_PORT + $1)); }
node_url() { echo "amqp://guest:guest@127.0.0.1:$(node_port "$1")/"; }

urls() {
  local out="" n
  for n in "${NODES[@]}"; do out+="${out:+,}$(node_url "$n")"; done
  echo "$out"
}

check_node_arg() { [[ "${1:-}" =~ ^[1-3]$ ]] || die "name a node: 1, 2 or 3 (got '${1:-}')"; }

ctl() {
  local n="$1"; shift
  timeout 60 docker exec "$(container "$n")" rabbitmqctl -q "$@" </dev/null
}

exists() { docker container inspect "$(container "$1")" >/dev/null 2>&1; }
is_running() { [ "$(docker inspect -f '{{ .State.Running }}' "$(container "$1")" 2>/dev/null)" = true ]; }

create_node() {  # a new, empty node container: its own config (port, no plugins) and cookie
  local n="$1" port; port="$(node_port "$n")"
  local conf="loopback_users.guest = false\nlisteners.tcp.local = 127.0.0.1:$port"
  conf+="\ncluster_partition_handling = pause_minority\nlog.console = true\nlog.file = false"
  docker run -d --name "$(container "$n")" --network host --label org.avatar-worker.tests=cluster \
    -e RABBITMQ_NODENAME="$(node_name "$n")" -e RABBITMQ_DIST_PORT=$((BASE_PORT + 20000 + n)) \
    -e RABBITMQ_CONFIG_FILE=/tmp/node.conf -e RABBITMQ_ENABLED_PLUGINS_FILE=/tmp/plugins \
    -e ERL_EPMD_ADDRESS=127.0.0.1 --entrypoint /bin/sh "$IMAGE" -c \
    "umask 077; echo $COOKIE > \$HOME/.erlang.cookie; umask 022; printf '$conf\n' > /tmp/node.conf
     echo '[].' > /tmp/plugins; exec /usr/lib/rabbitmq/bin/rabbitmq-server" >/dev/null
}

wait_up() {
  local n="$1" waited=0
  until ctl "$n" await_startup >/dev/null 2>&1; do
    if [ "$waited" -ge "$START_TIMEOUT_S" ]; then
      say "node $n did not come up in ${START_TIMEOUT_S} s; its log:"
      docker logs --tail 20 "$(container "$n")" >&2 2>&1 || true
      return 1
    fi
    sleep 1; waited=$((waited + 1))
  done
}

running_nodes() {
  ctl "$1" cluster_status --formatter json 2>/dev/null |
    grep -o '"running_nodes":\[[^]]*\]' | grep -o 'avatar-[0-9]*@localhost' || true
}

is_healthy() {  # all three up, in one cluster, from the current image
  local n want; want="$(docker image inspect -f '{{ .Id }}' "$IMAGE")"
  for n in "${NODES[@]}"; do
    is_running "$n" && [ "$(docker inspect -f '{{ .Image }}' "$(container "$n")")" = "$want" ] ||
      return 1
  done
  [ "$(running_nodes 1 | sort -u | wc -l)" -eq "${#NODES[@]}" ]
}

join() {  # node N joins node `$2` (default 1)
  local n="$1" seed="${2:-1}"
  ctl "$n" stop_app >/dev/null && ctl "$n" reset >/dev/null &&
    ctl "$n" join_cluster "$(node_name "$seed")" >/dev/null && ctl "$n" start_app >/dev/null
}

start() {
  docker image inspect "$IMAGE" >/dev/null 2>&1 ||
    die "no image $IMAGE: build it with scripts/docker.sh build rabbitmq4"
  if is_healthy; then say "reusing the running cluster"; urls; return 0; fi
  destroy
  local n
  for n in "${NODES[@]}"; do create_node "$n"; done
  for n in "${NODES[@]}"; do wait_up "$n" || die "node $n did not start (see above)"; done
  for n in "${NODES[@]:1}"; do join "$n" || die "node $n did not join node 1"; done
  is_healthy || die "the nodes did not form one cluster"
  say "cluster up: $(running_nodes 1 | tr '\n' ' ')"
  urls
}

stop() {
  local n
  for n in "${NODES[@]}"; do docker stop -t 30 "$(container "$n")" >/dev/null 2>&1 || true; done
}

destroy() {
  local n
  for n in "${NODES[@]}"; do docker rm -f "$(container "$n")" >/dev/null 2>&1 || true; done
}

kill_node() {
  docker kill "$(container "$1")" >/dev/null 2>&1 || true
  say "node $1 ($(node_name "$1")) killed"
}

restart_node() {  # the same container: its data, its name; it rejoins by itself
  local n="$1"
  is_running "$n" || docker start "$(container "$n")" >/dev/null
  wait_up "$n" || die "node $n did not come back (see above)"
  say "node $n ($(node_name "$n")) back"
}

recreate_node() {  # an empty node in place of node N; the others forget the old one
  local n="$1" other=1
  [ "$n" = 1 ] && other=2
  docker rm -f "$(container "$n")" >/dev/null 2>&1 || true
  ctl "$other" forget_cluster_node "$(node_name "$n")" >/dev/null 2>&1 || true
  create_node "$n"
  wait_up "$n" || die "node $n did not start (see above)"
  join "$n" "$other" || die "node $n did not join node $other"
  # Forgetting the old node took it out of every quorum queue: give each a member here again.
  timeout 120 docker exec "$(container "$n")" rabbitmq-queues -q grow "$(node_name "$n")" all \
    </dev/null >/dev/null 2>&1 || say "node $n: growing the quorum queues onto it failed"
  say "node $n ($(node_name "$n")) recreated"
}

status() {
  local n
  for n in "${NODES[@]}"; do
    if is_running "$n"; then echo "node $n $(node_name "$n") up"; else echo "node $n down"; fi
  done
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  destroy) destroy ;;
  status) status ;;
  urls) urls ;;
  kill) check_node_arg "${2:-}"; kill_node "$2" ;;
  restart) check_node_arg "${2:-}"; restart_node "$2" ;;
  recreate) check_node_arg "${2:-}"; recreate_node "$2" ;;
  ctl) check_node_arg "${2:-}"; n="$2"; shift 2; ctl "$n" "$@" ;;
  *) die "usage: scripts/docker-cluster.sh start|stop|destroy|status|urls|kill N|restart N|recreate N|ctl N ARGS" ;;
esac
