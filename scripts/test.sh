#!/usr/bin/env bash
# Sets up the project in .venv and runs the whole test suite, with a real PostgreSQL server
# on loopback for the multi-worker tests (started here, stopped on exit).
# Usage: bash scripts/test.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[test]'

source scripts/postgres.sh
start_postgres
trap stop_postgres EXIT

.venv/bin/python -m pytest "$@"
