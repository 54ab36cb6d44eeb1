"""Where a trial worker's memory goes: one configuration's CV in a fresh process, peak RSS and time.

Runs ``tuner.trial.run_cv`` of GAMIL-C at the Birds grid's largest point (hidden 512, 8 heads, 4
layers, batch 256; one thread) on the bundled Birds development data, in a fresh Python process
per run, with the fold models of ``--repeats`` repeats of 3-fold CV held at once, under each
allocator policy given, interleaved (A B A B ...):

- ``default``: glibc as it is;
- ``epoch``: ``gc.collect()`` and ``malloc_trim(0)`` once per epoch, after every fold trained
  (from the epoch's report, as a trial would);
- ``threshold``: ``MALLOC_MMAP_THRESHOLD_=4194304`` in the process's environment (large blocks
  always mmap'd, so they go back to the system when freed);
- ``hugepages``: the same threshold with glibc's transparent-huge-page tunable
  (``GLIBC_TUNABLES=glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304``, glibc 2.35
  and later): the blocks still go back when freed, but a fresh one faults in 2 MiB pages, not
  4 KiB ones, where the kernel allows huge pages on request (``madvise`` mode).

Peak RSS is the process's ``ru_maxrss``; imports alone are about 0.4 GB.

    python bench/worker_memory.py --repeats 5 --epochs 2 --policies default epoch --runs 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CONFIG = {"hidden": 512, "heads": 8, "layers": 4, "batch_size": 256, "k": 5}

CHILD = r"""
import json, resource, sys, time
import torch
torch.set_num_threads(1)
from tuner.search.data import prepare_data
from tuner.spec import load_space
from tuner.trial import CVProtocol, release_memory, run_cv
policy, repeats, epochs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
config = json.loads(sys.argv[4])
spec = load_space("birds")
_, dev, _ = prepare_data(spec, None)
report = (lambda row: release_memory()) if policy == "epoch" else None
started = time.monotonic()
result = run_cv("gamil_c", {**config, "epochs": epochs}, dev, CVProtocol(3, repeats, 0),
                max_epochs=epochs, report=report)
print(json.dumps({
    "seconds": round(time.monotonic() - started, 1),
    "peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    "average_precision": round(result.summary["average_precision"], 4),
}))
"""


def one_run(policy: str, repeats: int, epochs: int) -> dict[str, float]:
    env = dict(os.environ)
    if policy == "threshold":
        env["MALLOC_MMAP_THRESHOLD_"] = "4194304"
    if policy == "hugepages":
        env["GLIBC_TUNABLES"] = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304"
    out = subprocess.run(
        [sys.executable, "-c", CHILD, policy, str(repeats), str(epochs), json.dumps(CONFIG)],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return dict(json.loads(out.stdout.strip().splitlines()[-1]), load=round(os.getloadavg()[0], 1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--policies", nargs="+", default=["default", "epoch", "threshold"])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict[str, float]]] = {p: [] for p in args.policies}
    for i in range(args.runs):
        for policy in args.policies:
            row = one_run(policy, args.repeats, args.epochs)
            results[policy].append(row)
            print(f"run {i + 1} {policy}: {row}", flush=True)
    print(f"\n{args.repeats}x3 fold models, {args.epochs} epochs, config {CONFIG}")
    print("| policy | peak RSS (GB) | seconds | AP | load |\n|---|---|---|---|---|")
    for policy, rows in results.items():
        med = {k: round(statistics.median(r[k] for r in rows), 2) for k in ("peak_gb", "seconds")}
        aps = sorted({r["average_precision"] for r in rows})
        loads = f"{min(r['load'] for r in rows)}-{max(r['load'] for r in rows)}"
        print(f"| {policy} | {med['peak_gb']} | {med['seconds']} | {aps} | {loads} |")


if __name__ == "__main__":
    main()
