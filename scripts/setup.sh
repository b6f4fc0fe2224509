#!/usr/bin/env bash
# Create .venv and install the project's Python packages into it.
#   bash scripts/setup.sh         runtime packages (enough to run the app)
#   bash scripts/setup.sh --dev   runtime + test packages
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
req=requirements.txt
[ "${1:-}" = "--dev" ] && req=requirements-dev.txt
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -r "$req"
