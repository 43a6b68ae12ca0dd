#!/usr/bin/env bash
# The Node packages the documentation's examples use (docs/connect.md: amqplib), installed into
# .cache/node (gitignored) for tests/e2e/test_connect_docs.py. Quiet and quick when present.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/node
if [ -d "$dir/node_modules/amqplib" ]; then
  exit 0
fi
if ! command -v npm >/dev/null; then
  echo "node-deps: npm not found: the Node example of docs/connect.md will be skipped" >&2
  exit 0
fi
mkdir -p "$dir"
if ! npm install --prefix "$dir" --no-audit --no-fund --silent amqplib@0.10; then
  # The test then skips the Node example loudly (and fails under CI=true).
  echo "node-deps: npm install amqplib failed: the Node example of docs/connect.md will be skipped" >&2
fi
