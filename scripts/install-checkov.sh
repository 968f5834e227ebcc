#!/usr/bin/env bash
# Installs checkov (the static IaC scanner that tests/infra runs on infra/) into its own
# virtualenv, because checkov's dependency pins clash with the project's, and prints the
# path of its `checkov` executable on stdout.
#
#   scripts/install-checkov.sh            # installs once, then only prints the path
#   CHECKOV="$(scripts/install-checkov.sh)" && "$CHECKOV" -d infra --framework terraform
#
# Idempotent and quiet on reuse: a virtualenv counts as installed only once the marker
# file written after a successful install exists; a half-finished one is removed and
# redone. Concurrent callers wait on a lock instead of installing twice.
# Environment: GEODEPLOY_CACHE (default ~/.cache/geodeploy), PYTHON (default python3,
# which must be 3.9 or newer).
set -euo pipefail

CHECKOV_VERSION="3.3.30"

cache="${GEODEPLOY_CACHE:-$HOME/.cache/geodeploy}"
venv="$cache/checkov-$CHECKOV_VERSION"
marker="$venv/.geodeploy-installed"
python="${PYTHON:-python3}"

if [[ -f "$marker" && -x "$venv/bin/checkov" ]]; then
    echo "$venv/bin/checkov"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/checkov-$CHECKOV_VERSION.lock"
if command -v flock >/dev/null 2>&1; then
    flock 9
fi

# Another caller may have finished while we waited for the lock.
if [[ ! -f "$marker" || ! -x "$venv/bin/checkov" ]]; then
    echo "installing checkov $CHECKOV_VERSION into $venv (once)" >&2
    rm -rf "$venv"
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip >&2
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "checkov==$CHECKOV_VERSION" >&2
    "$venv/bin/checkov" --version >/dev/null
    touch "$marker"
fi

echo "$venv/bin/checkov"
