#!/usr/bin/env bash
# The GPU path end to end in one command (see scripts/gpu_check.py): a forget with the gold model, an enrolment,
# one bench cell and the app's run path on CUDA, each timed and compared with the CPU. Stops after 8 minutes.
# Usage: scripts/gpu_check.sh [--json PATH] [--skip-cpu] [--allow-cpu]     (from the repository root)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
exec timeout "${GPU_CHECK_TIMEOUT:-480}" "$PYTHON" scripts/gpu_check.py "$@"
