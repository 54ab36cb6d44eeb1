#!/usr/bin/env bash
# Reproduces every figure of BENCHMARKS.md (issues 2 and 3). About 2.5 hours on 2 CPU cores; run it on
# an otherwise idle machine, since the wall times are part of the results.
#   bash bench/run_all.sh [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-bench/out}
mkdir -p "$out"
export RAY_USAGE_STATS_ENABLED=0 MLFLOW_DISABLE_TELEMETRY=true
py=${PYTHON:-python}

# 3. Wall time and peak memory of the default launch; 1. its CV and holdout metrics.
"$py" bench/launch_resources.py -- --space birds | tee "$out/default_launch.json"
workdir=$("$py" -c "import json,sys; print(json.load(open(sys.argv[1]))['workdir'])" "$out/default_launch.json")
"$py" bench/birds_quality.py --name birds --tracking-uri "sqlite:///$workdir/mlflow.db" --out "$out" \
  | tee "$out/default_quality.md"

# The quick look from the README (issue 2: under 3 minutes on 2 cores).
"$py" bench/launch_resources.py -- --space birds --trials 4 --max-epochs 3 --cv-repeats 1 \
  | tee "$out/quick_launch.json"

# 2. Orchestration overhead of a Tune trial against the same CV run called directly.
"$py" bench/overhead.py | tee "$out/overhead.json"

# 1. A larger budget.
"$py" bench/birds_quality.py --space birds --trials 20 --name birds-large \
  --out "$out" | tee "$out/large_quality.md"

# 4. The papers' tables (issue 3): each paper's model tuned on each of its datasets, peers
# beside it, CV and holdout / official test split. DATA is a folder laid out like
# ../shared/data. About 90 minutes on 2 CPU cores.
data=${DATA:-../shared/data}
tables="$out/tables"
mkdir -p "$tables"
for space in scene reuters; do
  "$py" bench/paper_tables.py --space "$space" --trials 6 --max-epochs 20 --cv-repeats 1 \
    --data-root "$data" --threads 1 --out "$tables" | tee "$tables/$space.log"
done
for space in yeast_mulsupcon_ld scene_mulsupcon_ld yeast_mulsupcon scene_mulsupcon; do
  "$py" bench/paper_tables.py --space "$space" --trials 8 --data-root "$data" --threads 1 \
    --out "$tables" | tee "$tables/$space.log"
done
for space in yeast_sarb_p10 yeast_sarb_p50 yeast_sarb_p90 scene_sarb_p10 scene_sarb_p50 scene_sarb_p90; do
  "$py" bench/paper_tables.py --space "$space" --trials 5 --data-root "$data" --threads 1 \
    --out "$tables" | tee "$tables/$space.log"
done
