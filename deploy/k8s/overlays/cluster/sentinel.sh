#!/bin/sh
# A Sentinel watching the primary named "eventguard" (redis-0 at first); it rewrites its own
# configuration file, so the file lives in an emptyDir.
set -eu
cat > /data/sentinel.conf <<CONF
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel announce-ip $(hostname).redis.redis.svc
sentinel monitor eventguard redis-0.redis.redis.svc 6379 2
sentinel auth-pass eventguard $REDIS_PASSWORD
sentinel down-after-milliseconds eventguard 5000
sentinel failover-timeout eventguard 30000
CONF
exec redis-server /data/sentinel.conf --sentinel
