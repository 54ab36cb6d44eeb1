"""Wall time and peak memory of ``miml-tune launch`` (the driver plus every Ray process it starts).

Peak memory is sampled every 0.5 s as the summed resident set size (RSS) of the driver's whole
process tree and, separately, its largest single process. Summed RSS counts shared pages once per
process, so it overstates the true footprint somewhat; it is the number that matters for sizing
a machine conservatively. Every 5 s the summed proportional set size (PSS: a shared page counted
once, split among the processes that map it) is read too, the memory the tree really takes, and
at the peak of summed RSS each process's RSS is kept, to say where the memory is.

    python bench/launch_resources.py -- --space birds
    python bench/launch_resources.py -- --space birds --trials 4 --max-epochs 3 --cv-repeats 1
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time

import psutil


def main() -> None:
    args = sys.argv[1:]
    if args and args[0] == "--":
        args = args[1:]
    workdir = tempfile.mkdtemp(prefix="mtbench", dir="/tmp")
    env = dict(os.environ, RAY_USAGE_STATS_ENABLED="0", MLFLOW_DISABLE_TELEMETRY="true")
    command = [sys.executable, "-m", "tuner.cli", "launch", *args, "--json"]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    root = psutil.Process(proc.pid)
    peak_total = peak_single = peak_pss = 0
    at_peak: list[tuple[int, str]] = []
    last_pss = 0.0
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss, names = [], []
        for p in tree:
            with contextlib.suppress(psutil.Error):
                rss.append(p.memory_info().rss)
                names.append(" ".join(p.cmdline())[:60])
        if sum(rss) > peak_total:
            peak_total = sum(rss)
            at_peak = sorted(zip(rss, names, strict=True), reverse=True)
        peak_single = max(peak_single, max(rss, default=0))
        if time.monotonic() - last_pss >= 5:
            last_pss = time.monotonic()
            pss = 0
            for p in tree:
                with contextlib.suppress(psutil.Error):
                    pss += p.memory_full_info().pss
            peak_pss = max(peak_pss, pss)
        time.sleep(0.5)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    if proc.returncode != 0:
        print(err[-3000:], file=sys.stderr)
        sys.exit(proc.returncode)
    summary = json.loads(out)
    print(
        json.dumps(
            {
                "command": "miml-tune launch " + " ".join(args),
                "wall_seconds": round(wall, 1),
                "peak_rss_process_tree_gib": round(peak_total / 2**30, 2),
                "peak_rss_largest_process_gib": round(peak_single / 2**30, 2),
                "peak_pss_process_tree_gib": round(peak_pss / 2**30, 2),
                "rss_at_peak_mib": [[round(r / 2**20), n] for r, n in at_peak],
                "load_at_end": round(os.getloadavg()[0], 1),
                "trials": summary["trials"],
                "best_average_precision": summary["best"]["metrics"]["average_precision"],
                "peer_average_precision": summary["peer"]["metrics"]["average_precision"],
                "peers_average_precision": {
                    m: v["metrics"]["average_precision"]["mean"]
                    for m, v in (summary.get("peers") or {}).items()
                },
                "paired_tests": summary.get("comparisons"),
                "fold_epochs": summary.get("fold_epochs"),
                "best_config": summary["best"]["config"],
                "timing": summary.get("timing"),
                "workdir": workdir,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
