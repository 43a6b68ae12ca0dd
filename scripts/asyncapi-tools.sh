#!/usr/bin/env bash
# @asyncapi/parser (npm), which tests/unit/schemas/test_asyncapi_parser.py runs over the
# exported AsyncAPI document. Installed into .cache/asyncapi (gitignored), pinned; idempotent
# and quick when it is there. `make test` calls this before pytest.
# Exit status: 0 ready; 3 node/npm missing or the install failed (the test then skips, loudly);
# 1 the same with CI=true.
set -u
cd "$(dirname "$0")/.."
PARSER=@asyncapi/parser@3.6.6
DIR=.cache/asyncapi

if [ -f "$DIR/node_modules/@asyncapi/parser/package.json" ] \
  && grep -q '"version": "3.6.6"' "$DIR/node_modules/@asyncapi/parser/package.json"; then
  exit 0
fi
if command -v npm >/dev/null && command -v node >/dev/null; then
  echo "asyncapi-tools: installing $PARSER into $DIR"
  mkdir -p "$DIR"
  npm install --silent --no-audit --no-fund --prefix "$DIR" "$PARSER" >/dev/null 2>&1
fi
if [ -f "$DIR/node_modules/@asyncapi/parser/package.json" ]; then
  exit 0
fi
echo "asyncapi-tools: @asyncapi/parser is missing (needs node and npm); its test will skip" >&2
if [ "${CI:-}" = "true" ]; then exit 1; fi
exit 3
