#!/usr/bin/env bash
# The GPU check in one command (see benchmarks/gpu_check.py and README "GPU check"):
#   benchmarks/gpu_check.sh                        # on the GPU machine: installs ./gpu_wheels (--no-deps), runs, prints the table
#   benchmarks/gpu_check.sh --cpu                  # shrunk to a few minutes on a CPU (a smoke test)
#   benchmarks/gpu_check.sh --prepare-wheels DIR [--python-version 3.12]   # on a machine with PyPI
# Python: $PYTHON, else the checkout's .venv when it has one, else python3. Never `pip install -e .` here: that would
# replace the machine's torch; the checkout is used through PYTHONPATH.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${PYTHON:-}" ]; then
    if [ -x "$ROOT/.venv/bin/python" ]; then PYTHON="$ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-PASSIVE}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
cd "$ROOT"
exec "$PYTHON" "$ROOT/benchmarks/gpu_check.py" "$@"
