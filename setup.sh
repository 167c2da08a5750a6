#!/usr/bin/env bash
# Creates .venv (if missing) and installs Genesys with its pinned dependencies.
# torch goes first, on its own, so that nothing pulls a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[${GENESYS_EXTRAS:-dev}]"
echo "genesys installed in $(pwd)/.venv"
