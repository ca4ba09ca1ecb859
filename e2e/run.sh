#!/usr/bin/env bash
# Runs the end-to-end browser tests (every e2e/*.test.mjs, or the files named as arguments, e.g.
# `e2e/run.sh e2e/tabs.test.mjs`): the release chat-server serving dist/, driven in Debian's
# headless Chromium by playwright-core. Expects both to be built already (scripts/test builds
# them); installs the pinned npm packages when the lock file changed.
set -euo pipefail
cd "$(dirname "$0")/.."

: "${CHAT_SERVER_BIN:=target/release/chat-server}"
: "${CHAT_DIST:=dist}"
export CHAT_SERVER_BIN CHAT_DIST

for needed in "$CHAT_SERVER_BIN" "$CHAT_DIST/index.html" /usr/bin/chromium; do
    if [ ! -e "$needed" ]; then
        echo "e2e: $needed is missing (build with scripts/test, or cargo build --release -p chat-server and trunk build --release)" >&2
        exit 1
    fi
done

# npm ci only when node_modules is missing or older than the lock file.
if [ ! -d e2e/node_modules ] || [ e2e/package-lock.json -nt e2e/node_modules ]; then
    npm ci --prefix e2e --no-audit --no-fund
    touch e2e/node_modules
fi

if [ "$#" -eq 0 ]; then
    set -- e2e/
fi
node --test --test-timeout=180000 "$@"
