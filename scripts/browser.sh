#!/usr/bin/env bash
# What the console's browser tests need: Debian's chromium (Playwright's own browser download
# is not used) and axe-core from npm, kept under .cache/browser (gitignored).
# With CI=true a missing piece is an error; otherwise the browser tests skip and say why.
set -u
cd "$(dirname "$0")/.."

AXE_VERSION="4.10"
CACHE=".cache/browser"
problems=()

if ! command -v chromium >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "browser: installing chromium (apt-get)"
    for _ in 1 2 3 4 5 6; do  # another apt-get may hold the lock for a while
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null 2>&1 && break
      sleep 10
    done
  fi
  command -v chromium >/dev/null || problems+=("chromium (apt-get install -y chromium)")
fi

if [ ! -f "$CACHE/node_modules/axe-core/axe.min.js" ]; then
  if command -v npm >/dev/null; then
    echo "browser: installing axe-core@$AXE_VERSION into $CACHE"
    mkdir -p "$CACHE"
    npm install --silent --no-audit --no-fund --prefix "$CACHE" "axe-core@$AXE_VERSION" >/dev/null 2>&1
  fi
  [ -f "$CACHE/node_modules/axe-core/axe.min.js" ] || problems+=("axe-core (npm install --prefix $CACHE axe-core)")
fi

if [ ${#problems[@]} -gt 0 ]; then
  echo "browser: MISSING ${problems[*]}: the console's browser tests will skip" >&2
  if [ "${CI:-}" = "true" ]; then exit 1; fi
fi
exit 0
