#!/usr/bin/env bash
# The benchmark on the lent GPU machine, in one command (run from the repository root, carry [".gl", ".whl"]):
#   bash bench/device.sh [extra bench/run.py options]
# Sets up Vulkan, glslc and the wheels (bench/device_env.sh), runs bench/run.py with the torchvision models
# inside a fixed time budget, and writes results.json, results.md, latency.png, records/ and benchmarks.md to $OUT
# (bench/results when OUT is unset). A model or system that fails is noted and skipped; results are written as
# each model finishes, so whatever was measured comes back even if the budget runs out.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
mkdir -p "$out"
if [ -f bench/device_env.sh ]; then
  # shellcheck source=/dev/null
  . bench/device_env.sh >"$out/device_env.log" 2>&1 || echo "note: device_env.sh failed; see device_env.log"
else
  echo "note: bench/device_env.sh is missing: Vulkan and glslc may be unavailable" | tee "$out/device_env.log"
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
fi
if command -v nvidia-smi >/dev/null; then
  export BENCH_IREE_VULKAN_FLAGS="${BENCH_IREE_VULKAN_FLAGS:---iree-vulkan-target=ampere}"
fi
budget="${BENCH_BUDGET_S:-390}"  # the whole command must end within 8 minutes, set-up and report included
timeout --kill-after=10 $((budget + 40)) python3 bench/run.py --out "$out" --budget "$budget" --model-timeout 150 \
  --profile-timeout 120 --cap 15 "$@" 2>&1 | tee "$out/bench.log"
python3 bench/report.py "$out/results.json" -o "$out/benchmarks.md" || echo "note: no report (run.py wrote no results)"
