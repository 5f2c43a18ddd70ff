#!/usr/bin/env bash
# The whole test suite: set-up (idempotent), lint, type check, tests. Extra args go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
./setup.sh
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest "$@"
