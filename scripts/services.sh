#!/usr/bin/env bash
# Make sure RabbitMQ (with the management plugin) and Redis answer on 127.0.0.1.
# Uses a running server where there is one, starts one where the binary is installed,
# and otherwise says so loudly: with CI=true a missing service is an error, never a skip.
set -u

missing=()

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379 && printf 'PING\r\n' >&3 && head -c 5 <&3 | grep -q PONG) 2>/dev/null; }
amqp_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }
mgmt_up() { (exec 3<>/dev/tcp/127.0.0.1/15672) 2>/dev/null; }

if ! redis_up; then
  if command -v redis-server >/dev/null; then
    echo "services: starting redis-server"
    redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no >/dev/null
    for _ in $(seq 50); do redis_up && break; sleep 0.2; done
  fi
  redis_up || missing+=("redis")
fi

if ! amqp_up; then
  if command -v rabbitmq-server >/dev/null; then
    echo "services: starting rabbitmq-server"
    rabbitmq-server -detached >/dev/null 2>&1
    for _ in $(seq 120); do amqp_up && break; sleep 0.5; done
  fi
  amqp_up || missing+=("rabbitmq")
fi

if amqp_up && ! mgmt_up && command -v rabbitmq-plugins >/dev/null; then
  echo "services: enabling rabbitmq_management"
  rabbitmq-plugins enable rabbitmq_management >/dev/null 2>&1
  for _ in $(seq 60); do mgmt_up && break; sleep 0.5; done
fi
if amqp_up && command -v rabbitmqctl >/dev/null; then
  rabbitmqctl await_startup >/dev/null 2>&1 || true
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "################################################################################"
  echo "services: NOT AVAILABLE: ${missing[*]} -- integration tests will be skipped"
  echo "################################################################################"
  if [ "${CI:-}" = "true" ]; then
    echo "services: CI=true and a service is missing: failing" >&2
    exit 1
  fi
fi
exit 0
