#!/usr/bin/env bash
# Installs Debian's Chromium (and a font for it to draw text with), which
# tests/sandbox/test_status_page.py drives headless, and prints the path of its executable
# on stdout.
#
#   scripts/install-chromium.sh       # installs once (as root, with apt-get), then only prints the path
#
# Idempotent and quiet on reuse: nothing is asked of apt when /usr/bin/chromium exists.
# Concurrent callers wait on a lock instead of installing twice. Not root and no Chromium:
# it says so and fails (the browser test then skips with the same reason).
set -euo pipefail

chromium="${GEODEPLOY_CHROMIUM:-/usr/bin/chromium}"

if [[ -x "$chromium" ]]; then
    echo "$chromium"
    exit 0
fi
if [[ "$(id -u)" != 0 ]]; then
    echo "Chromium is not installed and this is not root: run 'apt-get install -y chromium' as root" >&2
    exit 1
fi

exec 9>/tmp/geodeploy-install-chromium.lock
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

# Another caller may have finished while we waited for the lock.
if [[ ! -x "$chromium" ]]; then
    echo "installing Debian's chromium (once)" >&2
    export DEBIAN_FRONTEND=noninteractive
    log="$(mktemp)"
    # apt's and dpkg's chatter only when something fails.
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; } >"$log" 2>&1; then
        cat "$log" >&2
        rm -f "$log"
        exit 1
    fi
    rm -f "$log"
    "$chromium" --version >/dev/null 2>&1
fi

echo "$chromium"
