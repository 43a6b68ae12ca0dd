#!/usr/bin/env bash
# make containers-e2e: the fleet as containers of localhost/eventguard:local under load, in a vhost
# of its own that is deleted at the end, then the host-network compose file up and down. Every
# container it started is removed on the way out, whatever happened.
set -euo pipefail
cd "$(dirname "$0")/.."
CONTAINERS_CONF=$(bash scripts/containers.sh conf)
export CONTAINERS_CONF
vhost="eg-containers-$(date +%s)-$$"
cleanup() {
  ids=$(podman ps -aq --filter label=io.eventguard.made-by=tests/containers 2>/dev/null || true)
  # shellcheck disable=SC2086
  [ -z "$ids" ] || podman rm -f -t 0 $ids >/dev/null 2>&1 || true
  rabbitmqctl delete_vhost "$vhost" >/dev/null 2>&1 || true
  bash scripts/containers.sh clean  # the project image and its build stages; the bases stay cached
}
trap cleanup EXIT
rabbitmqctl add_vhost "$vhost" >/dev/null
rabbitmqctl set_permissions -p "$vhost" guest '.*' '.*' '.*' >/dev/null
# The local test broker's guest user, as every other test uses it.
url="amqp://guest:guest@127.0.0.1:5672/$vhost"  # pragma: allowlist secret
EVENTGUARD_TEST_AMQP_URL="$url" EVENTGUARD_CONTAINERS_RESULTS=1 \
  .venv/bin/python -m pytest -q tests/containers -m containers -p no:cacheprovider
bash scripts/containers.sh compose
