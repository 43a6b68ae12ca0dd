#!/bin/sh
# Load definitions.json through the management API, then give each user its password from
# the environment (PASSWORD_<user>); replacing a user keeps its permissions. Idempotent:
# safe to run on every start.
set -eu
api=http://rabbitmq:15672/api
auth="admin:${RABBITMQ_ADMIN_PASSWORD}"
curl -fsS -u "$auth" -H 'content-type: application/json' -X POST \
  --data-binary @/definitions.json "$api/definitions"
for user in health_monitor quarantine ai_fallback opportunity_discovery marketplace chat operator console; do
  password=$(printenv "PASSWORD_${user}")
  body=$(printf '{"password":"%s","tags":""}' "$password")
  curl -fsS -u "$auth" -H 'content-type: application/json' -X PUT \
    --data "$body" "$api/users/${user}"
done
echo "rabbitmq-init: definitions loaded, passwords set"
