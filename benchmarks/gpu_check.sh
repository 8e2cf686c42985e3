#!/usr/bin/env bash
# The GPU path in one command (benchmarks/gpu_check.py says what it checks); fails fast without CUDA.
#   bash benchmarks/gpu_check.sh              # on a lent GPU: a few minutes
#   bash benchmarks/gpu_check.sh --cpu-smoke  # every part at tiny sizes on the CPU
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec python benchmarks/gpu_check.py "$@"
