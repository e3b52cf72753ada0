#!/usr/bin/env bash
# A full `ragc profile` then `ragc costmodel eval` (cpu and gpu) on the lent GPU machine (carry [".gl", ".whl"]).
# Together they outlast one 10-minute command, so they run in the background (setsid) and each call waits:
#   bash bench/device_costmodel.sh start   # set up, start both, wait up to WAIT_S, copy what is done to $OUT
#   bash bench/device_costmodel.sh wait    # (while the machine is still warm) wait again, copy again
# $OUT gets profile.txt, the personality (personality.json), eval.json (reports), eval.txt (tables), timings.json
# (the measurements, for `ragc costmodel eval --timings`) and run.log.
set -u
cd "$(dirname "$0")/.."
out="${OUT:-bench/results}"
work=bench/.cache/device-costmodel
mkdir -p "$out" "$work"
# shellcheck source=/dev/null
. bench/device_env.sh >"$work/device_env.log" 2>&1
export XDG_CACHE_HOME="$PWD/$work/xdg"
if [ "${1:-}" = start ]; then
  rm -f "$work/done"
  setsid bash -c "
    python3 -m ragc.cli profile >'$work/profile.txt' 2>&1
    python3 -m ragc.cli costmodel eval --json --save-timings '$work/timings.json' >'$work/eval.json' 2>'$work/run.log'
    python3 -m ragc.cli costmodel eval --timings '$work/timings.json' >'$work/eval.txt' 2>>'$work/run.log'
    touch '$work/done'" </dev/null >/dev/null 2>&1 &
fi
deadline=$((SECONDS + ${WAIT_S:-540}))
while [ ! -f "$work/done" ] && [ $SECONDS -lt $deadline ]; do sleep 5; done
for f in profile.txt eval.json eval.txt timings.json run.log device_env.log; do
  [ -f "$work/$f" ] && cp "$work/$f" "$out/"
done
cp "$XDG_CACHE_HOME"/ragc/personality/*.json "$out/personality.json" 2>/dev/null
[ -f "$work/done" ] && echo "done" || echo "still running: call again with 'wait'"
tail -5 "$work/profile.txt" 2>/dev/null
