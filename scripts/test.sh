#!/usr/bin/env bash
# The whole test suite, as the README's Quick start runs it:
#   1. the emulator harness (Python venv created on first use) and its own tests;
#   2. the deployment checks (cfn-lint, checkov, HCL parsing, least privilege,
#      the agent template deployed through StackSets in the emulator);
#   3. every Rust test of the workspace (unit, property and emulator-backed
#      integration tests; each test binary starts its own emulator).
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== emulator harness =="
bash tests/emulator/bootstrap.sh
tests/emulator/.venv/bin/python -m pytest tests/emulator -q

echo "== deployment checks (terraform/, agent template) =="
bash terraform/tests/bootstrap.sh
terraform/tests/.venv/bin/python -m pytest terraform/tests -q

echo "== cargo test =="
cargo test --workspace --locked "$@"
