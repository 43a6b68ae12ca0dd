#!/usr/bin/env bash
# Build and run EventGuard's image with podman (or docker when an engine answers), no registry needed.
#
#   scripts/containers.sh image [--cold]  build localhost/eventguard:local (--cold: without the layer
#                                   cache); build times and size to bench/results/containers.json
#   scripts/containers.sh compose  the host-network compose file (deploy/compose.host.yaml) up, ready, down
#   scripts/containers.sh clean    remove every container and image this script made, except the cached bases
#
# Where no registry answers, the base is made from Debian's packages: debootstrap (bookworm,
# minbase) imported with `podman import`, then Debian's Python 3.11 on top. Package sources and the
# CA bundle a build needs are bind-mounted into the build (`podman build -v`), never copied into a
# layer. Podman on this kind of machine needs runc and rlimits no higher than the host's: both are
# set in a containers.conf of our own (CONTAINERS_CONF), no system file is changed. The script never
# creates a container network or touches firewall rules: containers use the host's network.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT=$(pwd)
STATE=${EVENTGUARD_CONTAINERS_STATE:-$ROOT/.cache/containers}
IMAGE=${EVENTGUARD_IMAGE:-localhost/eventguard:local}
DEBIAN_BASE=localhost/eventguard-base/debian:bookworm
PYTHON_BASE=localhost/eventguard-base/python:3.11-bookworm
UPSTREAM_BASE=docker.io/library/python:3.11-slim-bookworm
RESULTS=$ROOT/bench/results/containers.json
LABEL=io.eventguard.made-by=scripts/containers.sh
mkdir -p "$STATE"

log() { printf 'containers: %s\n' "$*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

install_tools() {
  command -v podman >/dev/null && command -v runc >/dev/null && command -v debootstrap >/dev/null && return
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing podman, runc and debootstrap from Debian's packages"
    # apt's lock may be held for a moment by another install on this machine.
    for _ in 1 2 3 4 5 6; do
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >/dev/null && return
      apt-get update -qq >/dev/null 2>&1 || true
      sleep 5
    done
  fi
  log "need podman, runc and debootstrap (apt-get install podman runc debootstrap)"
  exit 1
}

# Rootful podman asks for rlimits above the host's hard limits, and crun refuses this machine's
# hybrid cgroup layout: our own containers.conf picks runc and the host's own limits.
write_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn)
  nproc=$(ulimit -Hu)
  [ "$nofile" = unlimited ] && nofile=1048576
  { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  cat >"$STATE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF=$STATE/containers.conf
}

engine() {
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then echo docker; else echo podman; fi
}

# The host's package sources (deb822 or one-line form), mounted where apt reads them.
apt_mounts() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do
    [ -s "$f" ] && printf -- '-v %s:%s:ro ' "$f" "$f"
  done
  for f in /usr/share/keyrings/debian-archive-keyring.gpg; do
    [ -s "$f" ] && printf -- '-v %s:%s:ro ' "$f" "$f"
  done
}

# pip inside the build trusts the host's CA bundle through a mounted pip.conf.
pip_mounts() {
  local ca=/etc/ssl/certs/ca-certificates.crt
  [ -s "$ca" ] || return 0
  printf '[global]\ncert = /run/eventguard-build/ca.crt\n' >"$STATE/pip.conf"
  printf -- '-v %s:/run/eventguard-build/ca.crt:ro -v %s:/etc/pip.conf:ro ' "$ca" "$STATE/pip.conf"
}

mirror() {
  local uri
  uri=$(grep -hoE '^(URIs:|deb) +https?://[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/* 2>/dev/null \
        | grep -v security | head -n 1 | awk '{print $2}')
  echo "${uri:-http://deb.debian.org/debian}"
}

# The base: the official image where a registry answers, else one made from Debian's packages.
ensure_base() {
  local eng=$1 started root
  if [ -n "${EVENTGUARD_IMAGE_BASE:-}" ]; then echo "$EVENTGUARD_IMAGE_BASE"; return; fi
  if $eng image exists "$PYTHON_BASE" 2>/dev/null; then echo "$PYTHON_BASE"; return; fi
  if timeout 30 "$eng" pull -q "$UPSTREAM_BASE" >/dev/null 2>&1; then echo "$UPSTREAM_BASE"; return; fi
  log "no registry answered: building the base from Debian's packages"
  started=$(now)
  if ! $eng image exists "$DEBIAN_BASE" 2>/dev/null; then
    root=$(mktemp -d "$STATE/rootfs.XXXXXX")
    debootstrap --variant=minbase bookworm "$root" "$(mirror)" >"$STATE/debootstrap.log" 2>&1 \
      || { tail -20 "$STATE/debootstrap.log" >&2; rm -rf "$root"; exit 1; }
    rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
      "$root"/etc/apt/sources.list "$root"/etc/apt/sources.list.d/*
    tar -C "$root" -c . | $eng import -q --change 'CMD ["/bin/bash"]' - "$DEBIAN_BASE" >/dev/null
    rm -rf "$root"
  fi
  # shellcheck disable=SC2046 # the mounts are separate words on purpose
  $eng build -q --format docker --label "$LABEL" $(apt_mounts) \
    --build-arg DEBIAN="$DEBIAN_BASE" -t "$PYTHON_BASE" -f deploy/docker/base.Containerfile deploy/docker >/dev/null
  echo "base_s=$(since "$started")" >"$STATE/base.figures"
  echo "$PYTHON_BASE"
}

build_image() {
  local eng=$1 base=$2 extra=$3
  # shellcheck disable=SC2046,SC2086 # the mounts are separate words on purpose
  $eng build -q --format docker --label "$LABEL" $extra $(apt_mounts) $(pip_mounts) \
    --build-arg BASE="$base" -t "$IMAGE" -f deploy/docker/Dockerfile . >/dev/null
}

cmd_image() {
  install_tools
  write_conf
  local eng base t first warm size base_s=null mode=cached flag=""
  if [ "${1:-}" = --cold ]; then mode=cold; flag=--no-cache; fi
  eng=$(engine)
  rm -f "$STATE/base.figures"
  base=$(ensure_base "$eng")
  # shellcheck disable=SC1091
  [ -f "$STATE/base.figures" ] && . "$STATE/base.figures"
  log "building $IMAGE on $base ($mode)"
  t=$(now); build_image "$eng" "$base" "$flag"; first=$(since "$t")
  log "rebuilding $IMAGE (warm: nothing changed)"
  t=$(now); build_image "$eng" "$base" ""; warm=$(since "$t")
  size=$($eng image inspect "$IMAGE" --format '{{.Size}}')
  $eng run --rm --no-healthcheck --network=none --read-only "$IMAGE" --version >/dev/null 2>&1 \
    || $eng run --rm --no-healthcheck --network=none --read-only "$IMAGE" --help >/dev/null
  python3 - "$RESULTS" "$eng" "$base" "$mode" "$first" "$warm" "$size" "$base_s" <<'EOF'
import json, pathlib, sys
path, engine, base, mode, first, warm, size, base_s = sys.argv[1:]
target = pathlib.Path(path)
data = json.loads(target.read_text()) if target.exists() else {}
image = data.get("image", {})
image.update(engine=engine, base=base, warm_build_s=float(warm), image_bytes=int(size),
             image_mib=round(int(size) / 2**20, 1))
image["cold_build_s" if mode == "cold" else "last_build_s"] = float(first)
if base_s != "null":
    image["base_build_s"] = float(base_s)
data["image"] = image
target.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
EOF
  log "image $IMAGE: $mode ${first}s, warm ${warm}s, $((size / 1048576)) MiB"
}

cmd_clean() {
  write_conf
  local eng ids
  eng=$(engine)
  ids=$($eng ps -aq --filter "label=$LABEL" 2>/dev/null || true)
  ids="$ids $($eng ps -aq --filter "ancestor=$IMAGE" 2>/dev/null || true)"
  # shellcheck disable=SC2086
  [ -n "${ids// /}" ] && $eng rm -f -t 0 $ids >/dev/null 2>&1 || true
  $eng rmi -f "$IMAGE" >/dev/null 2>&1 || true
  $eng image prune -f >/dev/null 2>&1 || true
}

# podman-compose 1.6+ from PyPI (Debian's 1.0.3 creates networks even for host-network services).
compose_bin() {
  local venv=$STATE/compose-venv
  if [ ! -x "$venv/bin/podman-compose" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q 'podman-compose>=1.6,<2' 2>&1 | grep -v '^WARNING: Location' >&2 || true
    [ -x "$venv/bin/podman-compose" ] || { log "could not install podman-compose from PyPI"; exit 1; }
  fi
  echo "$venv/bin/podman-compose"
}

# Globals, so the EXIT trap still sees them after cmd_compose returns.
COMPOSE_BIN="" COMPOSE_VHOST="" COMPOSE_PREFIX=""
compose_down() {
  [ -n "$COMPOSE_BIN" ] || return 0
  VHOST=$COMPOSE_VHOST PREFIX=$COMPOSE_PREFIX JWT=unused \
    "$COMPOSE_BIN" -f deploy/compose.host.yaml --in-pod false down -t 30 >/dev/null 2>&1 || true
  if rabbitmqctl delete_vhost "$COMPOSE_VHOST" >/dev/null 2>&1; then
    log "compose: down, vhost $COMPOSE_VHOST deleted"
  else
    log "compose: could not delete vhost $COMPOSE_VHOST (rabbitmqctl delete_vhost it by hand)"
  fi
  redis-cli --scan --pattern "${COMPOSE_PREFIX}*" | xargs -r redis-cli del >/dev/null 2>&1 || true
}

cmd_compose() {
  install_tools
  write_conf
  local port ready started jwt
  COMPOSE_BIN=$(compose_bin)
  COMPOSE_VHOST="eg-compose-$(date +%s)-$$"
  COMPOSE_PREFIX="compose-$$:"
  trap compose_down EXIT
  rabbitmqctl add_vhost "$COMPOSE_VHOST" >/dev/null
  rabbitmqctl set_permissions -p "$COMPOSE_VHOST" guest '.*' '.*' '.*' >/dev/null
  jwt=$(python3 -c 'import secrets; print(secrets.token_urlsafe(48))')
  started=$(now)
  VHOST=$COMPOSE_VHOST PREFIX=$COMPOSE_PREFIX JWT=$jwt \
    "$COMPOSE_BIN" -f deploy/compose.host.yaml --in-pod false up -d --no-build >/dev/null
  for port in 18081 18082 18083 18084; do
    ready=""
    for _ in $(seq 150); do
      if python3 -c "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:$port/readyz', timeout=1).status == 200 else 1)" 2>/dev/null; then
        ready=yes; break
      fi
      sleep 0.2
    done
    if [ -z "$ready" ]; then
      log "compose: the worker on port $port is not ready"
      podman ps -a --filter "name=eventguard-host" >&2 || true
      exit 1
    fi
  done
  log "compose: four workers ready in $(since "$started")s"
}

case "${1:-}" in
  image) cmd_image "${2:-}" ;;
  compose) cmd_compose ;;
  clean) cmd_clean ;;
  conf) write_conf; echo "$CONTAINERS_CONF" ;;
  *) echo "usage: $0 image|compose|clean|conf" >&2; exit 2 ;;
esac
