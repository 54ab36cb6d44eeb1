"""Two trainings at once on a small machine: what OpenMP's waiting policy does to them.

A ``promote`` refits its model in the foreground with torch's default threads (one per core).
Two such processes at once on two cores (two promotions, or a promotion beside another command
that trains) run four threads on two cores. Each refit below is GAMIL-C on the bundled Birds set
(hidden 256, 4 heads, 3 layers, batch 64, 6 epochs), in a fresh process, alone and two at once,
under each OpenMP setting given, interleaved (A B A B ...):

- ``default``: libgomp as it is (threads spin for a while at a barrier before they sleep);
- ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` (threads sleep at once);
- ``spin10k``: ``GOMP_SPINCOUNT=10000`` (a short spin).

    python bench/two_at_once.py --runs 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

CHILD = r"""
import time
from tuner.data import load_dataset
from tuner.promote import refit
dev = load_dataset("birds")
config = {"hidden": 256, "heads": 4, "layers": 3, "batch_size": 64, "lr": 1e-3, "k": 5}
started = time.time()
refit("gamil_c", config, dev, epochs=6, seed=0)
print(round(time.time() - started, 1))
"""

POLICIES = {
    "default": {},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "spin10k": {"GOMP_SPINCOUNT": "10000"},
}


def refits(policy: str, at_once: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    procs = [
        subprocess.Popen([sys.executable, "-c", CHILD], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(at_once)
    ]
    return [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    alone: dict[str, list[float]] = {p: [] for p in args.policies}
    paired: dict[str, list[float]] = {p: [] for p in args.policies}
    for i in range(args.runs):
        for policy in args.policies:
            alone[policy] += refits(policy, 1)
            paired[policy] += refits(policy, 2)
            load = os.getloadavg()[0]
            print(f"run {i + 1} {policy}: alone {alone[policy][-1]} s, two at once "
                  f"{paired[policy][-2:]} s, load {load:.1f}", flush=True)  # fmt: skip
    print("\n| OpenMP setting | refit alone (median) | each of two at once (median) | all |")
    print("|---|---|---|---|")
    for policy in args.policies:
        print(
            f"| {policy} | {statistics.median(alone[policy])} s | "
            f"{statistics.median(paired[policy]):.1f} s | {sorted(paired[policy])} |"
        )


if __name__ == "__main__":
    main()
