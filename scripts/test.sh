#!/usr/bin/env bash
# The whole test suite, as the README's Quick start runs it:
#   0. the system tools the tests need: Chromium (`chromium`, renders the HTML
#      report in the coordinator tests) and 7-Zip (`7z`, the second
#      independent decryptor of the AES zip; pyzipper is the first). When one
#      is missing and this runs as root on Debian/Ubuntu, it is installed with
#      apt-get; otherwise the script stops at once, naming the missing
#      package(s) and the command that installs them;
#   1. the emulator harness (Python venv created on first use) and its own tests;
#   2. the deployment checks (cfn-lint, checkov, HCL parsing, least privilege,
#      the crate graph as Cargo resolves it,
#      the agent template deployed through StackSets in the emulator);
#   3. every Rust test of the workspace (unit, property and emulator-backed
#      integration tests; each test binary starts its own emulator; the
#      command line's end-to-end tests run the deployed Lambdas);
#   4. the operator's build of the command line, without the emulator
#      (`--no-default-features`), still compiles.
# Arguments are passed to `cargo test`.
#
# Sourcing this file (`source scripts/test.sh`) only defines its functions,
# so the tool check can be run on its own: `ensure_system_tools`.
# For tests of that check only: KEYFLEET_OS_RELEASE names the os-release file
# to read instead of /etc/os-release.

# Debian packages providing the commands the tests need, as "command:package".
SYSTEM_TOOLS=(chromium:chromium 7z:p7zip-full)

is_debian_like() {
    local file="${KEYFLEET_OS_RELEASE:-/etc/os-release}" ids
    [ -r "$file" ] || return 1
    # shellcheck disable=SC1090
    ids="$(unset ID ID_LIKE; . "$file" >/dev/null 2>&1; echo "${ID:-} ${ID_LIKE:-}")"
    case " $ids " in
        *" debian "* | *" ubuntu "*) return 0 ;;
        *) return 1 ;;
    esac
}

ensure_system_tools() {
    local entry missing=() cmd
    for entry in "${SYSTEM_TOOLS[@]}"; do
        command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0

    local install="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${missing[*]}"
    if [ "$(id -u)" -ne 0 ] || ! is_debian_like; then
        {
            echo "scripts/test.sh: missing package(s): ${missing[*]} (the tests need the commands: chromium, 7z)."
            if is_debian_like; then
                echo "Install them as root, e.g.:"
            else
                echo "This is not Debian/Ubuntu: install the packages providing 'chromium' and '7z'; on Debian/Ubuntu, as root:"
            fi
            echo "  sudo sh -c '$install'"
        } >&2
        return 1
    fi

    echo "== installing ${missing[*]} ==" >&2
    apt-get update -qq || { echo "scripts/test.sh: apt-get update failed" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || { echo "scripts/test.sh: apt-get install ${missing[*]} failed" >&2; return 1; }
    for entry in "${SYSTEM_TOOLS[@]}"; do
        cmd="${entry%%:*}"
        command -v "$cmd" >/dev/null 2>&1 \
            || { echo "scripts/test.sh: '$cmd' still missing after installing ${entry#*:}" >&2; return 1; }
    done
}

main() {
    set -euo pipefail
    cd "$(dirname "${BASH_SOURCE[0]}")/.."

    ensure_system_tools

    echo "== emulator harness =="
    bash tests/emulator/bootstrap.sh
    tests/emulator/.venv/bin/python -m pytest tests/emulator -q

    echo "== deployment checks (terraform/, agent template, crate graph) =="
    bash terraform/tests/bootstrap.sh
    terraform/tests/.venv/bin/python -m pytest terraform/tests -q

    echo "== cargo test =="
    cargo test --workspace --locked "$@"

    echo "== keyfleet without the emulator (the operator's build) =="
    cargo build -p keyfleet --no-default-features --locked
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    main "$@"
fi
