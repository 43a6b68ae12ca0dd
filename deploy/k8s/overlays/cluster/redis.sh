#!/bin/sh
# A Redis data node: a replica of whichever primary the Sentinels name; redis-0 is the first
# primary when no Sentinel answers yet (a fresh deployment).
set -eu
self="$(hostname).redis.redis.svc"
primary=""
for n in 0 1 2; do
  primary=$(redis-cli -h "redis-$n.redis.redis.svc" -p 26379 --raw \
    sentinel get-master-addr-by-name eventguard 2>/dev/null | head -1) && [ -n "$primary" ] && break
done
if [ -z "$primary" ] && [ "$(hostname)" != redis-0 ]; then primary=redis-0.redis.redis.svc; fi
set -- --appendonly yes --requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD" \
  --replica-announce-ip "$self"
if [ -n "$primary" ] && [ "$primary" != "$self" ]; then set -- "$@" --replicaof "$primary" 6379; fi
exec redis-server "$@"
