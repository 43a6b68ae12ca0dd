#!/usr/bin/env bash
# A private three-node RabbitMQ cluster on loopback, for `make chaos` and by hand.
#
#   scripts/rabbit-cluster.sh start            start eg1, then eg2 + eg3 (they join eg1)
#   scripts/rabbit-cluster.sh status           nodes running, cluster members
#   scripts/rabbit-cluster.sh urls [USER:PASS] the nodes' AMQP URLs, comma-separated
#   scripts/rabbit-cluster.sh node ROLE        which node (1-3) has ROLE:
#       N | leader:QUEUE (leads QUEUE's quorum) | connection:NAME (holds that connection)
#   scripts/rabbit-cluster.sh kill ROLE [SIG]  send SIG (default KILL) to that node's VM
#   scripts/rabbit-cluster.sh restart N        start node N again (it rejoins the cluster)
#   scripts/rabbit-cluster.sh stop             stop every node and the private epmd
#   scripts/rabbit-cluster.sh clean            stop, then delete the data directory
#
# Never touches the machine's own RabbitMQ (rabbit@localhost, 5672/15672/25672, its cookie in
# /var/lib/rabbitmq, epmd on 4369): node names egN@localhost, AMQP ports $EG_RABBIT_PORT+N-1,
# distribution ports 10000 above them, a private epmd on $EG_EPMD_PORT, a cookie and every
# config file under $EG_CLUSTER_DIR, and the server binaries called directly (the Debian
# wrappers switch to the rabbitmq user and its HOME, i.e. the system node's cookie).
set -euo pipefail

DIR=${EG_CLUSTER_DIR:-${TMPDIR:-/tmp}/eventguard-cluster-$(id -u)}/rabbit
BASE_PORT=${EG_RABBIT_PORT:-18401}
EPMD_PORT=${EG_EPMD_PORT:-18400}
CTL_PORT_MIN=${EG_RABBIT_CTL_PORT:-28410}
RMQ_BIN=${RMQ_BIN:-/usr/lib/rabbitmq/bin}
NODES=(1 2 3)

node_name() { echo "eg$1@localhost"; }
node_port() { echo $((BASE_PORT + $1 - 1)); }

env_for() {  # env_for N: the environment of node N's server and of CLI calls against it
  local n=$1 d="$DIR/eg$1"
  export HOME="$DIR/home" ERL_EPMD_PORT=$EPMD_PORT
  export RABBITMQ_NODENAME RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT RABBITMQ_DIST_PORT
  RABBITMQ_NODENAME=$(node_name "$n")
  RABBITMQ_NODE_PORT=$(node_port "$n")
  RABBITMQ_DIST_PORT=$((RABBITMQ_NODE_PORT + 10000))
  export RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf" RABBITMQ_CONFIG_FILE="$d/rabbitmq.conf"
  export RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
  export RABBITMQ_MNESIA_BASE="$d/mnesia" RABBITMQ_LOG_BASE="$d/log" RABBITMQ_PID_FILE="$d/pid"
  export RABBITMQ_CTL_DIST_PORT_MIN=$CTL_PORT_MIN RABBITMQ_CTL_DIST_PORT_MAX=$((CTL_PORT_MIN + 20))
  export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
}

ctl() {  # ctl N TOOL ARGS...: a CLI tool against node N (about 1 s of CPU each)
  local n=$1 tool=$2
  shift 2
  (env_for "$n" && "$RMQ_BIN/$tool" -n "$(node_name "$n")" "$@")
}

beam_pid() { [ -s "$DIR/eg$1/pid" ] && cat "$DIR/eg$1/pid"; }
alive() { local pid; pid=$(beam_pid "$1") && kill -0 "$pid" 2>/dev/null; }
amqp_up() { (exec 3<>"/dev/tcp/127.0.0.1/$(node_port "$1")") 2>/dev/null; }

write_config() {
  local n=$1 d="$DIR/eg$1"
  mkdir -p "$d/log" "$d/mnesia" "$DIR/home"
  : >"$d/rabbitmq-env.conf"
  echo "[]." >"$d/enabled_plugins"
  echo "[]." >"$d/advanced.config"
  {
    echo "listeners.tcp.default = 127.0.0.1:$(node_port "$n")"
    echo "loopback_users = none"
    echo "log.file.level = info"
    echo "log.console = false"
    echo "cluster_formation.peer_discovery_backend = classic_config"
    for m in "${NODES[@]}"; do echo "cluster_formation.classic_config.nodes.$m = $(node_name "$m")"; done
  } >"$d/rabbitmq.conf"
}

ensure_epmd() {
  if [ -s "$DIR/epmd.pid" ] && kill -0 "$(cat "$DIR/epmd.pid")" 2>/dev/null; then return; fi
  mkdir -p "$DIR"
  setsid epmd -port "$EPMD_PORT" -address 127.0.0.1 >"$DIR/epmd.log" 2>&1 &
  echo $! >"$DIR/epmd.pid"
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$EPMD_PORT") 2>/dev/null && return; sleep 0.1; done
  echo "rabbit-cluster: epmd did not start on $EPMD_PORT" >&2
  return 1
}

ensure_cookie() {
  mkdir -p "$DIR/home"
  if [ ! -s "$DIR/home/.erlang.cookie" ]; then
    (umask 077 && head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$DIR/home/.erlang.cookie")
  fi
  chmod 0400 "$DIR/home/.erlang.cookie"
}

start_node() {  # start_node N: launch node N in its own session (so stop reaches every child)
  local n=$1
  if alive "$n"; then return; fi
  write_config "$n"
  rm -f "$DIR/eg$n/pid"
  (env_for "$n" && exec setsid "$RMQ_BIN/rabbitmq-server" >>"$DIR/eg$n/log/stdout.log" 2>&1) &
  echo $! >"$DIR/eg$n/session.pid"
}

await_node() {  # await_node N [SECONDS]
  local n=$1 limit=${2:-90}
  for _ in $(seq $((limit * 4))); do
    if amqp_up "$n" && [ -s "$DIR/eg$n/pid" ]; then
      ctl "$n" rabbitmqctl await_startup --timeout "$limit" >/dev/null 2>&1 && return 0
    fi
    sleep 0.25
  done
  echo "rabbit-cluster: eg$n did not start within ${limit}s (log: $DIR/eg$n/log)" >&2
  return 1
}

running_members() {
  ctl 1 rabbitmqctl cluster_status --formatter json 2>/dev/null \
    | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null \
    || echo 0
}

cmd_start() {
  ensure_epmd
  ensure_cookie
  start_node 1
  await_node 1
  start_node 2
  start_node 3
  await_node 2
  await_node 3
  if [ "$(running_members)" != 3 ]; then  # formed apart: join them by hand
    for n in 2 3; do
      ctl "$n" rabbitmqctl stop_app >/dev/null
      ctl "$n" rabbitmqctl reset >/dev/null
      ctl "$n" rabbitmqctl join_cluster "$(node_name 1)" >/dev/null
      ctl "$n" rabbitmqctl start_app >/dev/null
    done
  fi
  [ "$(running_members)" = 3 ] || { echo "rabbit-cluster: cluster did not form" >&2; return 1; }
  echo "rabbit-cluster: 3 nodes up on $(node_port 1)-$(node_port 3)"
}

cmd_status() {
  for n in "${NODES[@]}"; do
    if alive "$n"; then echo "eg$n: running, pid $(beam_pid "$n"), port $(node_port "$n")"; else echo "eg$n: down"; fi
  done
  for n in "${NODES[@]}"; do
    if alive "$n"; then echo "members running: $(running_members_of "$n")"; return; fi
  done
}

running_members_of() {
  ctl "$1" rabbitmqctl cluster_status --formatter json 2>/dev/null \
    | python3 -c 'import json,sys; print(" ".join(json.load(sys.stdin)["running_nodes"]))' 2>/dev/null
}

cmd_urls() {
  local auth=${1:-guest:guest} vhost=${2:-} urls=()
  for n in "${NODES[@]}"; do urls+=("amqp://$auth@127.0.0.1:$(node_port "$n")/$vhost"); done
  (IFS=,; echo "${urls[*]}")
}

first_alive() {
  for n in "${NODES[@]}"; do if alive "$n"; then echo "$n"; return 0; fi; done
  return 1
}

cmd_node() {  # prints the node number for ROLE
  local role=$1 n node
  case $role in
    [1-3]) echo "$role" ;;
    leader:*)
      n=$(first_alive)
      node=$(ctl "$n" rabbitmqctl list_queues name leader --formatter json 2>/dev/null \
        | python3 -c 'import json,sys; q=sys.argv[1]; print(next(r["leader"] for r in json.load(sys.stdin) if r["name"]==q))' "${role#leader:}")
      echo "${node%@*}" | tr -dc 0-9 ;;
    connection:*)  # the node is the one whose AMQP port the connection reached
      n=$(first_alive)
      node=$(ctl "$n" rabbitmqctl list_connections client_properties port --formatter json 2>/dev/null \
        | python3 -c 'import json,sys; want=sys.argv[1]
for r in json.load(sys.stdin):
    if want in json.dumps(r["client_properties"]):
        print(r["port"] - int(sys.argv[2]) + 1); break' "${role#connection:}" "$BASE_PORT")
      echo "$node" | tr -dc 0-9 ;;
    *) echo "rabbit-cluster: unknown role $role" >&2; return 2 ;;
  esac
}

cmd_kill() {
  local n sig=${2:-KILL}
  n=$(cmd_node "$1")
  [ -n "$n" ] || { echo "rabbit-cluster: no node has role $1" >&2; return 1; }
  kill -s "$sig" "$(beam_pid "$n")"
  echo "$n"
}

stop_node() {
  local n=$1 session pid
  session=$( [ -s "$DIR/eg$n/session.pid" ] && cat "$DIR/eg$n/session.pid" || true)
  pid=$(beam_pid "$n" || true)
  [ -n "$pid" ] && kill -CONT "$pid" 2>/dev/null || true
  [ -n "$session" ] && kill -TERM -- "-$session" 2>/dev/null || true
  [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 40); do
    { [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && { [ -z "$session" ] || ! kill -0 -- "-$session" 2>/dev/null; } && break
    sleep 0.25
  done
  [ -n "$session" ] && kill -KILL -- "-$session" 2>/dev/null || true
  [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/eg$n/pid" "$DIR/eg$n/session.pid"
}

cmd_stop() {
  for n in "${NODES[@]}"; do stop_node "$n" & done
  wait
  if [ -s "$DIR/epmd.pid" ]; then
    kill -KILL "$(cat "$DIR/epmd.pid")" 2>/dev/null || true
    rm -f "$DIR/epmd.pid"
  fi
  echo "rabbit-cluster: stopped"
}

case ${1:-} in
  start) cmd_start ;;
  status) cmd_status ;;
  urls) shift; cmd_urls "$@" ;;
  node) cmd_node "$2" ;;
  kill) shift; cmd_kill "$@" ;;
  restart) start_node "$2" && await_node "$2" && echo "rabbit-cluster: eg$2 back" ;;
  stop) cmd_stop ;;
  clean) cmd_stop && rm -rf "$DIR" ;;
  *) sed -n '2,18p' "$0"; exit 2 ;;
esac
