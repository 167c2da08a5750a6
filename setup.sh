#!/usr/bin/env bash
# Creates .venv (if missing) and installs Genesys with its pinned dependencies.
# `./setup.sh --tests` also installs what the tests need from Debian (PostgreSQL).
# torch goes first, on its own, so that nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ "${1:-}" = "--tests" ]; then
    bash .ci/postgres.sh  # Debian's PostgreSQL server binaries, for the archive's PostgreSQL tests
fi
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[${GENESYS_EXTRAS:-dev}]"
echo "genesys installed in $(pwd)/.venv"
