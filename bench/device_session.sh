#!/usr/bin/env bash
# The whole H200 measurement session, run in the background on the lent machine so that several short `device run`
# calls can poll it:  bash bench/device_session.sh start   (returns at once; work goes on in its own session)
#                     bash bench/device_session.sh collect (copies what is done into $OUT as one tarball + log)
# Steps run one after another (never two timings at once) and each writes into $RESULTS; a failing step is noted
# and the next one runs. RAGC_STEPS (names, space-separated) runs a subset; RAGC_MODELS the placement models,
# RAGC_TMODELS the transformer models, RAGC_QDQ_ARGS / RAGC_KERNEL_ARGS / RAGC_ADAPTIVE_ARGS those benches' arguments.
# real_eval times every op of the real skeletons (bench/skeletons) on each processor, for `costmodel eval --timings`.
set -u
cd "$(dirname "$0")/.."
RESULTS=/tmp/ragc-results
case "${1:-}" in
start)
  mkdir -p "$RESULTS"
  setsid nohup bash "$0" steps >"$RESULTS/session.log" 2>&1 < /dev/null &
  echo "started (pid $!)"
  ;;
collect)
  tail -n 40 "$RESULTS/session.log"
  tar -czf "$OUT/results.tar.gz" -C "$RESULTS" . && ls -la "$RESULTS"
  ;;
steps)
  export RAGC_WHEELS="${RAGC_WHEELS:-.whlmin}" XDG_CACHE_HOME=/tmp/ragc-cache
  . bench/device_env.sh
  step() {  # name, seconds, command...
    local name=$1 limit=$2; shift 2
    [[ " ${RAGC_STEPS:-$name} " == *" $name "* ]] || return 0
    echo "=== $name ($(date +%T))"
    timeout --kill-after=10 "$limit" "$@" >"$RESULTS/$name.txt" 2>&1
    echo "=== $name rc=$? ($(date +%T))"
  }
  nvidia-smi -L
  step smoke 240 python3 -m pytest -q -x -p no:cacheprovider tests/test_vulkan_backend.py tests/test_memory_bridge.py \
    tests/test_gpu_specials.py tests/test_gpu_attention.py tests/test_transformers_gpu.py tests/test_kept_state.py \
    tests/test_llm_gpu.py
  step float_rules 60 python3 bench/float_rules.py
  step overhead 120 python3 bench/overhead.py
  step cold_start 200 python3 bench/cold_start.py --repeat 2
  step transformer_gemm 240 python3 bench/transformer_gemm.py
  step transformers 420 python3 bench/h200_transformers.py --out "$RESULTS" ${RAGC_TMODELS:+--models "$RAGC_TMODELS"}
  step precision 300 bash -c "python3 -m pytest -q -p no:cacheprovider -rs tests/test_gpu_coopmat.py \
    tests/test_gpu_precision.py tests/test_precision_plans.py tests/test_precision_costs.py tests/test_qdq_int8.py; \
    python3 bench/coopmat_gemm.py; python3 bench/qdq_int8.py --runs 50"
  step qdq 300 python3 bench/qdq_int8.py ${RAGC_QDQ_ARGS:-}
  step kernels 200 python3 bench/gpu_kernels.py vit_b_16 bert_base ${RAGC_KERNEL_ARGS:-}
  step profile 200 bash -c "python3 -m ragc.cli profile --quick && cp $XDG_CACHE_HOME/ragc/personality/*.json $RESULTS/"
  step real_eval 420 bash -c "python3 -m ragc.cli costmodel eval --models \$(ls bench/skeletons/*.onnx | paste -sd,) \
    --save-timings $RESULTS/real-timings.json --json > $RESULTS/real-eval.json"
  step llm_export 300 python3 bench/llm.py --export-skeletons "$RESULTS/skeletons/llm" --out /tmp/ragc-llm
  step llm 540 bash -c "python3 bench/llm.py --out /tmp/ragc-llm; cp /tmp/ragc-llm/*.json $RESULTS/"  # models stay out
  step adaptive 480 python3 bench/adaptive.py --json "$RESULTS/adaptive.json" ${RAGC_ADAPTIVE_ARGS:-}
  step placement 600 python3 bench/h200_placement.py --out "$RESULTS" --budget "${RAGC_BUDGET:-540}" --tune-budget 8 \
    ${RAGC_MODELS:+--models "$RAGC_MODELS"}
  mkdir -p "$RESULTS/skeletons"
  for m in /tmp/ragc-real/*.onnx; do [ -e "$m" ] || continue; python3 -m ragc.profiler.skeleton strip "$m" "$RESULTS/skeletons/$(basename "$m")"; done
  echo "=== all done ($(date +%T))"
  ;;
esac
