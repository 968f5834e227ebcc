#!/usr/bin/env bash
# Prints the path of a Python <major.minor> interpreter: python<major.minor> on PATH if it
# runs, else the newest pyenv install of that version. The venv, the tests and the
# sandbox's functions run on the functions' runtime (infra/functions.tf), so CI tests what
# Cloud Functions runs.
set -euo pipefail
want=${1:?usage: find-python.sh MAJOR.MINOR}
check='import sys; raise SystemExit(".".join(map(str, sys.version_info[:2])) != sys.argv[1])'

if found=$(command -v "python$want" 2>/dev/null) && "$found" -c "$check" "$want" 2>/dev/null; then
    echo "$found"
    exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
    root=$(pyenv root)
    for dir in $(ls -d "$root/versions/$want".* 2>/dev/null | sort -V -r); do
        if [ -x "$dir/bin/python$want" ] && "$dir/bin/python$want" -c "$check" "$want" 2>/dev/null; then
            echo "$dir/bin/python$want"
            exit 0
        fi
    done
fi
echo "find-python.sh: no Python $want found (on PATH or in pyenv); install it, or run make with PYTHON=/path/to/python$want" >&2
exit 1
