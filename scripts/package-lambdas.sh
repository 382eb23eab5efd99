#!/usr/bin/env bash
# Build keyfleet's three Lambda functions for the provided.al2023 runtime and
# package them for deployment:
#
#   dist/agent.zip         bootstrap of the agent (crate keyfleet-agent, bin agent)
#   dist/coordinator.zip   bootstrap of the coordinator (crate keyfleet-coordinator, bin coordinator)
#   dist/api.zip           bootstrap of the security team's API (crate keyfleet-api, bin keyfleet-api)
#   dist/SHA256SUMS
#
# Usage: scripts/package-lambdas.sh [--arm64] [--out DIR] [--dry-run]
#
#   --arm64    build for Graviton (aarch64-unknown-linux-gnu) instead of x86_64
#   --out DIR  write the zips to DIR instead of dist/
#   --dry-run  set up the tools, check the Rust target, print the build
#              command and stop
#
# Tools: cargo-lambda and zig come from PyPI (packages cargo-lambda and
# ziglang), installed into a venv under target/tools/ on first use and
# reinstalled when the pinned versions below change. cargo-lambda builds with
# cargo-zigbuild: zig is the linker, and the binaries need glibc <= 2.34 (what
# provided.al2023 ships), so no container or cross toolchain is needed.
# A release build of both functions takes a while and uses every core; set
# CARGO_BUILD_JOBS to limit it.
#
# arm64: needs the Rust standard library for aarch64-unknown-linux-gnu
# (`rustup target add aarch64-unknown-linux-gnu`, a download from the Rust
# distribution server; zig does the linking). Deploy arm64 zips with
# architecture = "arm64" in Terraform (coordinator module and agent-stackset
# module / example variable), since Lambda refuses a bootstrap built for the
# other instruction set. All zips are always built for the same one.
set -euo pipefail

CARGO_LAMBDA_VERSION="1.9.2"
ZIGLANG_VERSION="0.17.1"

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
arch="x86_64"
out="$root/dist"
dry_run=0

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --arm64) arch="arm64" ;;
    --x86-64 | --x86_64) arch="x86_64" ;;
    --out)
      [[ $# -ge 2 ]] || { echo "package-lambdas: --out needs a directory" >&2; exit 2; }
      out="$2"
      shift
      ;;
    --dry-run) dry_run=1 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "package-lambdas: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

case "$arch" in
  x86_64) triple="x86_64-unknown-linux-gnu"; arch_flag="--x86-64" ;;
  arm64) triple="aarch64-unknown-linux-gnu"; arch_flag="--arm64" ;;
esac

# --- tools -------------------------------------------------------------------
venv="${KEYFLEET_TOOLS_VENV:-$root/target/tools/cargo-lambda}"
python="${PYTHON:-python3}"
want="cargo-lambda==$CARGO_LAMBDA_VERSION ziglang==$ZIGLANG_VERSION"
if [[ ! -x "$venv/bin/cargo-lambda" || "$(cat "$venv/.pins" 2>/dev/null)" != "$want" ]]; then
  echo "package-lambdas: installing $want into $venv" >&2
  "$python" -m venv --clear "$venv"
  # shellcheck disable=SC2086 # $want is two requirement specifiers
  "$venv/bin/python" -m pip install --disable-pip-version-check --quiet $want
  echo "$want" > "$venv/.pins"
fi
# cargo finds `cargo lambda` on PATH; cargo-zigbuild finds zig through this
# venv's python (python3 -m ziglang).
export PATH="$venv/bin:$PATH"

if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
  echo "package-lambdas: the Rust target $triple is not installed; run: rustup target add $triple" >&2
  exit 1
fi

# --- build -------------------------------------------------------------------
build_dir="$root/target/lambda/$arch"
cmd=(cargo lambda build --release "$arch_flag" --output-format zip --lambda-dir "$build_dir"
  --locked -p keyfleet-agent -p keyfleet-coordinator -p keyfleet-api
  --bin agent --bin coordinator --bin keyfleet-api)

if [[ $dry_run -eq 1 ]]; then
  echo "(cd $root && ${cmd[*]})"
  exit 0
fi

(cd "$root" && "${cmd[@]}")

# --- package -----------------------------------------------------------------
mkdir -p "$out"
for fn in agent coordinator api; do
  bin="$fn"
  [[ "$fn" == api ]] && bin="keyfleet-api"
  zip="$build_dir/$bin/bootstrap.zip"
  [[ -f "$zip" ]] || { echo "package-lambdas: $zip was not built" >&2; exit 1; }
  # Lambda runs the file named bootstrap at the root of the zip.
  "$venv/bin/python" - "$zip" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
if names != ["bootstrap"]:
    sys.exit(f"package-lambdas: {sys.argv[1]} holds {names}, expected only bootstrap")
PY
  cp "$zip" "$out/$fn.zip"
done
(cd "$out" && sha256sum agent.zip coordinator.zip api.zip > SHA256SUMS)
echo "package-lambdas: $arch build written to $out:" >&2
cat "$out/SHA256SUMS"
