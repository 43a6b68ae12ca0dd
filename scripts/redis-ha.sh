#!/usr/bin/env bash
# A private Redis with Sentinel on loopback (one primary, two replicas, three Sentinels), for
# `make chaos` and by hand.
#
#   scripts/redis-ha.sh start             start the data nodes, then the Sentinels; wait until
#                                         every Sentinel sees both replicas and the others
#   scripts/redis-ha.sh status            each process, its role, the primary Sentinel names
#   scripts/redis-ha.sh sentinels         host:port of each Sentinel, comma-separated
#   scripts/redis-ha.sh port ROLE         primary | replica | sentinel | PORT -> a port
#   scripts/redis-ha.sh kill ROLE [SIG]   send SIG (default KILL) to that process; prints its port
#   scripts/redis-ha.sh restart PORT      start that data node again, as a replica of the
#                                         current primary (or that Sentinel)
#   scripts/redis-ha.sh await            wait until the primary has both replicas in sync
#   scripts/redis-ha.sh stop              stop every process
#   scripts/redis-ha.sh clean             stop, then delete the data directory
#
# Never touches the machine's own Redis (6379): ports $EG_REDIS_PORT.. (data) and
# $EG_SENTINEL_PORT.. (Sentinels), every file under $EG_CLUSTER_DIR. No persistence: a data
# node comes back empty and resyncs from the primary (the restart makes it a replica first).
set -euo pipefail

DIR=${EG_CLUSTER_DIR:-${TMPDIR:-/tmp}/eventguard-cluster-$(id -u)}/redis
DATA_PORT=${EG_REDIS_PORT:-18411}
SENTINEL_PORT=${EG_SENTINEL_PORT:-18421}
MASTER=${EG_REDIS_MASTER:-eventguard}
DATA=($DATA_PORT $((DATA_PORT + 1)) $((DATA_PORT + 2)))
SENTINELS=($SENTINEL_PORT $((SENTINEL_PORT + 1)) $((SENTINEL_PORT + 2)))

cli() { redis-cli -h 127.0.0.1 -p "$1" "${@:2}"; }
pid_of() { [ -s "$DIR/$1/pid" ] && cat "$DIR/$1/pid"; }
alive() { local pid; pid=$(pid_of "$1") && kill -0 "$pid" 2>/dev/null; }

start_data() {  # start_data PORT [PRIMARY_PORT]
  local port=$1 primary=${2:-} d="$DIR/$1"
  alive "$port" && return
  mkdir -p "$d"
  {
    echo "port $port"
    echo "bind 127.0.0.1"
    echo "dir $d"
    echo "save \"\""
    echo "appendonly no"
    echo "repl-diskless-sync yes"
    echo "repl-diskless-sync-delay 0"
    echo "protected-mode no"
    echo "logfile $d/redis.log"
    if [ -n "$primary" ]; then echo "replicaof 127.0.0.1 $primary"; fi
  } >"$d/redis.conf"
  setsid redis-server "$d/redis.conf" >/dev/null 2>&1 &
  echo $! >"$d/pid"
}

start_sentinel() {
  local port=$1 d="$DIR/$1"
  alive "$port" && return
  mkdir -p "$d"
  if [ ! -s "$d/sentinel.conf" ]; then  # Sentinel rewrites its own file: keep what it learnt
    {
      echo "port $port"
      echo "bind 127.0.0.1"
      echo "dir $d"
      echo "protected-mode no"
      echo "logfile $d/sentinel.log"
      echo "sentinel monitor $MASTER 127.0.0.1 ${DATA[0]} 2"
      echo "sentinel down-after-milliseconds $MASTER 1000"
      echo "sentinel failover-timeout $MASTER 5000"
      echo "sentinel parallel-syncs $MASTER 2"
    } >"$d/sentinel.conf"
  fi
  setsid redis-server "$d/sentinel.conf" --sentinel >/dev/null 2>&1 &
  echo $! >"$d/pid"
}

until_true() {  # until_true SECONDS COMMAND...
  local limit=$1
  shift
  for _ in $(seq $((limit * 10))); do "$@" >/dev/null 2>&1 && return 0; sleep 0.1; done
  return 1
}

sentinel_ready() {  # every Sentinel knows both replicas and the two other Sentinels
  local s info
  for s in "${SENTINELS[@]}"; do
    info=$(cli "$s" sentinel master "$MASTER" 2>/dev/null | paste - - | tr '\t' ' ')
    echo "$info" | grep -q '^num-slaves 2$' || return 1
    echo "$info" | grep -q '^num-other-sentinels 2$' || return 1
  done
}

cmd_start() {
  mkdir -p "$DIR"
  start_data "${DATA[0]}"
  until_true 10 cli "${DATA[0]}" ping
  start_data "${DATA[1]}" "${DATA[0]}"
  start_data "${DATA[2]}" "${DATA[0]}"
  for s in "${SENTINELS[@]}"; do start_sentinel "$s"; done
  if ! until_true 30 sentinel_ready; then
    echo "redis-ha: Sentinels did not see 2 replicas and each other within 30 s" >&2
    return 1
  fi
  echo "redis-ha: primary ${DATA[0]}, replicas ${DATA[1]} ${DATA[2]}, Sentinels ${SENTINELS[*]}"
}

primary_port() {
  local s
  for s in "${SENTINELS[@]}"; do
    if alive "$s"; then
      cli "$s" sentinel get-master-addr-by-name "$MASTER" 2>/dev/null | sed -n 2p && return 0
    fi
  done
  return 1
}

cmd_port() {
  case $1 in
    primary) primary_port ;;
    replica)
      local p primary
      primary=$(primary_port)
      for p in "${DATA[@]}"; do
        if [ "$p" != "$primary" ] && alive "$p"; then echo "$p"; return 0; fi
      done
      return 1 ;;
    sentinel) for p in "${SENTINELS[@]}"; do alive "$p" && { echo "$p"; return 0; }; done; return 1 ;;
    [0-9]*) echo "$1" ;;
    *) echo "redis-ha: unknown role $1" >&2; return 2 ;;
  esac
}

cmd_kill() {
  local port
  port=$(cmd_port "$1")
  kill -s "${2:-KILL}" "$(pid_of "$port")"
  echo "$port"
}

cmd_restart() {
  local port=$1 primary
  if [[ " ${SENTINELS[*]} " == *" $port "* ]]; then start_sentinel "$port"; return; fi
  primary=$(primary_port || true)
  [ "$primary" = "$port" ] && primary=""
  start_data "$port" "$primary"
  until_true 10 cli "$port" ping
}

replicas_synced() {
  local primary
  primary=$(primary_port) || return 1
  cli "$primary" info replication | grep -q '^connected_slaves:2'
}

cmd_status() {
  local p
  for p in "${DATA[@]}"; do
    if alive "$p"; then echo "$p: $(cli "$p" role | head -1), pid $(pid_of "$p")"; else echo "$p: down"; fi
  done
  for p in "${SENTINELS[@]}"; do
    if alive "$p"; then echo "$p: sentinel, pid $(pid_of "$p")"; else echo "$p: sentinel down"; fi
  done
  echo "primary: $(primary_port || echo unknown)"
}

cmd_stop() {
  local p pid
  for p in "${SENTINELS[@]}" "${DATA[@]}"; do
    pid=$(pid_of "$p" || true)
    [ -n "$pid" ] || continue
    kill -CONT "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$DIR/$p/pid"
  done
  echo "redis-ha: stopped"
}

case ${1:-} in
  start) cmd_start ;;
  status) cmd_status ;;
  sentinels) echo "127.0.0.1:${SENTINELS[0]},127.0.0.1:${SENTINELS[1]},127.0.0.1:${SENTINELS[2]}" ;;
  port) cmd_port "$2" ;;
  kill) shift; cmd_kill "$@" ;;
  restart) cmd_restart "$2" ;;
  await) until_true 40 replicas_synced || { echo "redis-ha: replicas not back in 40 s" >&2; exit 1; } ;;
  stop) cmd_stop ;;
  clean) cmd_stop && rm -rf "$DIR" ;;
  *) sed -n '2,20p' "$0"; exit 2 ;;
esac
