#!/usr/bin/env bash
# make chaos: the fleet on a private three-node RabbitMQ cluster and Redis with Sentinel,
# under load, with node kills (tests/chaos). Figures: bench/results/chaos.json.
# Whatever happens (a failure, Ctrl-C, the 600 s timeout), the trap stops the worker processes
# the suite started, every RabbitMQ node, epmd, Redis and Sentinel, and deletes their data.
set -u
cd "$(dirname "$0")/.."
export EG_CLUSTER_DIR=${EG_CLUSTER_DIR:-${TMPDIR:-/tmp}/eventguard-cluster-$(id -u)}

cleanup() {
  local pids="$EG_CLUSTER_DIR/fleet.pids" pid
  if [ -s "$pids" ]; then
    while read -r pid; do  # only our own workers and loads, should a pid have been reused
      if [ -r "/proc/$pid/cmdline" ] && tr "\0" " " <"/proc/$pid/cmdline" | grep -Eq "eventguard.cli (run|load)"; then
        kill -KILL "$pid" 2>/dev/null || true
      fi
    done <"$pids"
  fi
  rm -f "$pids"
  bash scripts/rabbit-cluster.sh clean >/dev/null 2>&1 || true
  bash scripts/redis-ha.sh clean >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The workers' and the load's logs stay here after the run (replaced by the next run).
logs=${EG_CHAOS_LOGS:-${TMPDIR:-/tmp}/eventguard-chaos-logs-$(id -u)}
started=$(date +%s)
EVENTGUARD_CHAOS=1 timeout -k 20 600 .venv/bin/python -m pytest -q tests/chaos -p no:cacheprovider \
  --basetemp "$logs" -s
rc=$?
echo "chaos: $(($(date +%s) - started)) s, exit $rc, logs in $logs"
exit $rc
