"""Active learning on Birds and scene: every query strategy against random, 5 seeds (issue 14).

Runs ``miml-tune active simulate`` (in process, :func:`tuner.active.run.simulate`) for each
setting below, into its own sqlite store under ``--out``, and prints a Markdown table per
setting: each strategy's area under the holdout learning curve (mean over seeds, normalised: the
mean metric over the labelled range), the labelled fraction it needs to reach 95 % of the
metric with every development bag labelled, and the Wilcoxon signed-rank test of its areas
against random's over the seeds (one-sided, exact: with 5 seeds the smallest p is 1/32).

    python bench/active_learning.py --settings birds-mlp scene-mlp --seeds 5
    python bench/active_learning.py --report          # the tables again, from --out
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

SHARED = Path(os.environ.get("MIML_TUNE_SHARED_DATA", Path(__file__).parents[2] / "shared/data"))
STRATEGIES = ["random", "uncertainty", "margin", "cardinality", "mmc", "kcenter"]
SETTINGS: dict[str, dict] = {
    # 207 development bags: start from 21, eight rounds of 10 (to 101, about half).
    "birds-mlp": {"space": "birds", "model": "bag_mean_mlp", "start": 0.1, "batch": 10,
                  "rounds": 8},
    "birds-gamil": {"space": "birds", "model": "gamil_c", "start": 0.1, "batch": 10,
                    "rounds": 8},
    # 1,600 development bags: start from 32 (2 %), eight rounds of 20 (to 192, 12 %).
    "scene-mlp": {"space": "scene", "model": "bag_mean_mlp", "start": 0.02, "batch": 20,
                  "rounds": 8, "data": str(SHARED / "miml" / "scene.arff")},
}  # fmt: skip


def run(name: str, seeds: int, out: Path) -> dict:
    from tuner.active.run import simulate

    setting = dict(SETTINGS[name])
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    result = simulate(
        setting.pop("space"), strategies=STRATEGIES, seeds=seeds, name=f"bench-{name}",
        tracking_uri=f"sqlite:///{folder / 'mlflow.db'}", out=str(folder), **setting,
    )  # fmt: skip
    result["seconds"] = round(time.monotonic() - started, 1)
    result["load"] = round(os.getloadavg()[0], 1)
    (folder / "result.json").write_text(json.dumps(result, indent=2, default=str))
    return result


def table(result: dict) -> str:
    lines = [
        f"{result['dataset']}, {result['model']} ({result['configuration']}): start "
        f"{result['start']:.0%} of {result['development_bags']} development bags, "
        f"{result['rounds']} rounds of {result['batch']}, {result['seeds']} seeds; "
        f"{result['seconds']} s, load {result['load']} at the end.",
        "",
        "| strategy | AP area | AP: labelled to reach 95 % | AP vs random (p) | macro-F1 area "
        "| macro-F1 vs random (p) |",
        "|---|---|---|---|---|---|",
    ]
    for strategy, entry in result["strategies_summary"].items():
        ap, f1 = entry["average_precision"], entry["macro_f1"]
        reach = ap["fraction_to_95"]

        def verdict(stats: dict) -> str:
            test = stats.get("vs_random")
            return "-" if test is None else f"{test['verdict']} ({test['p_value']:.3g})"

        lines.append(
            f"| {strategy} | {ap['area']:.4f} | "
            f"{'not reached' if reach is None else f'{reach:.0%}'} | {verdict(ap)} | "
            f"{f1['area']:.4f} | {verdict(f1)} |"
        )
    full = result["full_label"]
    mean_full = {
        m: sum(v[m] for v in full.values()) / len(full) for m in ("average_precision", "macro_f1")
    }
    lines.append("")
    lines.append(
        f"Every development bag labelled: AP {mean_full['average_precision']:.4f}, macro-F1 "
        f"{mean_full['macro_f1']:.4f} (mean over seeds)."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=["birds-mlp", "scene-mlp"],
                        choices=sorted(SETTINGS))  # fmt: skip
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("bench/out/active"))
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    for name in args.settings:
        path = args.out / name / "result.json"
        if args.report:
            if not path.is_file():
                print(f"{name}: no result at {path}", file=sys.stderr)
                continue
            result = json.loads(path.read_text())
        else:
            result = run(name, args.seeds, args.out)
        print(f"\n### {name}\n\n{table(result)}", flush=True)


if __name__ == "__main__":
    main()
