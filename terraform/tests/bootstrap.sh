#!/usr/bin/env bash
# Create (or refresh) the virtualenvs of the terraform/ static checks:
#
#   terraform/tests/.venv          cfn-lint, python-hcl2, PyYAML, policy-sentry, pytest
#   terraform/tests/.venv/checkov  checkov (kept apart: its bc-python-hcl2
#                                  dependency installs a package also named
#                                  hcl2 and would overwrite python-hcl2)
#
# Idempotent: each venv records the sha256 of its requirements file and of the
# interpreter version, and is rebuilt only when one of them changes.
# Usage: terraform/tests/bootstrap.sh            (PYTHON=python3.12 to pick an interpreter)
# Then:  terraform/tests/.venv/bin/python -m pytest terraform/tests -q
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${PYTHON:-python3}"

ensure_venv() {
  local dir="$1" requirements="$2"
  local stamp="$dir/.requirements.sha256"
  local want
  want="$({ sha256sum "$requirements" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
  if [[ -x "$dir/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "bootstrap: creating $dir from $(basename "$requirements")" >&2
  # Keep a nested venv (checkov) when only the outer one is rebuilt.
  if [[ -d "$dir" ]]; then
    find "$dir" -mindepth 1 -maxdepth 1 ! -name checkov -exec rm -rf {} +
  fi
  "$python" -m venv "$dir"
  "$dir/bin/python" -m pip install --disable-pip-version-check --quiet --upgrade pip
  "$dir/bin/python" -m pip install --disable-pip-version-check --quiet -r "$requirements"
  echo "$want" > "$stamp"
}

# Concurrent callers wait for each other instead of building the same venv.
exec 9>"$here/.bootstrap.lock"
flock 9

ensure_venv "$here/.venv" "$here/requirements.txt"
ensure_venv "$here/.venv/checkov" "$here/requirements-checkov.txt"
