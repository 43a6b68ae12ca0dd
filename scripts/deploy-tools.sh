#!/usr/bin/env bash
# Tools the deploy checks need beyond the Python ones in the dev extras: promtool (Debian's
# prometheus package) and kubectl (for kustomize; on this machine image it comes with the
# Google Cloud CLI). Idempotent and quick when everything is there. With CI=true a tool that
# cannot be had is an error.
set -u
missing=()
if ! command -v promtool >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "deploy-tools: installing Debian's prometheus package for promtool"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus) >/dev/null 2>&1
  fi
  command -v promtool >/dev/null || missing+=(promtool)
fi
command -v kubectl >/dev/null || missing+=(kubectl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "deploy-tools: MISSING ${missing[*]}"
  if [ "${CI:-}" = "true" ]; then exit 1; fi
  exit 3
fi
