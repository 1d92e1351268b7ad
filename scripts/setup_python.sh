#!/usr/bin/env bash
# Create the repo-local Python venv (.venv) used to generate test fixtures, and install the
# pinned reference packages. Idempotent: re-running only installs what is missing/different.
#   scripts/setup_python.sh            # then: .venv/bin/python scripts/make_fixtures.py
# PYTHON=python3.11 scripts/setup_python.sh to choose the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
if .venv/bin/python - <<'PY' 2>/dev/null
import sys
from importlib.metadata import version
for line in open("scripts/requirements.txt"):
    line = line.split("#")[0].strip()
    if not line:
        continue
    name, want = line.split("==")
    if version(name) != want:
        sys.exit(1)
PY
then
    echo "setup_python: .venv already has the pinned packages"
    exit 0
fi
.venv/bin/python -m pip install --upgrade pip
.venv/bin/python -m pip install -r scripts/requirements.txt
echo "setup_python: done ($(.venv/bin/python -V))"
