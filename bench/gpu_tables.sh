#!/usr/bin/env bash
# The papers' tables on a GPU machine (BENCHMARKS.md section 2): every space in parallel, each
# process one space under a stated budget; results as JSON under OUT, logs beside them.
#   bash bench/gpu_tables.sh DATA_ROOT OUT
set -u
root=$1; out=$2; mkdir -p "$out/logs"
run() {  # space, extra arguments...
  local space=$1; shift
  timeout "${LIMIT:-520}" python3 bench/paper_tables.py --space "$space" --data-root "$root" \
    --out "$out" --threads 2 "$@" > "$out/logs/$space.log" 2>&1 &
}
run scene --trials 4 --max-epochs 20 --cv-repeats 1
run reuters --trials 4 --max-epochs 20 --cv-repeats 1
run yeast_mulsupcon_ld --trials 8
run scene_mulsupcon_ld --trials 8
run yeast_mulsupcon --trials 8
run scene_mulsupcon --trials 6
run yeast_sarb_p10 --trials 4
run yeast_sarb_p50 --trials 4
run yeast_sarb_p90 --trials 4
wait
