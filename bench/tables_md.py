"""Renders the JSON records of ``bench/paper_tables.py`` as the markdown tables of BENCHMARKS.md,
with the numbers each paper reports beside them (PAPERS.md).

    python bench/tables_md.py bench/out/tables/scene.json bench/out/tables/reuters.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tuner.metrics import ALL_METRICS, mode_of

# What the papers report, by space (PAPERS.md). Their protocols differ from ours; see the notes
# in BENCHMARKS.md (GAMIL-C: 5x3 CV on all bags; MulSupCon(_LD): the official test split, with
# each metric's threshold picked on that test split).
PAPER: dict[str, dict[str, float]] = {
    "scene": {
        "average_precision": 0.8086,
        "one_error": 0.2787,
        "ranking_loss": 0.1561,
        "macro_f1": 0.6123,
        "hamming_loss": 0.1940,
        "coverage": 0.1806,
    },
    "reuters": {
        "average_precision": 0.9717,
        "one_error": 0.0505,
        "ranking_loss": 0.0168,
        "macro_f1": 0.8769,
        "hamming_loss": 0.0282,
        "coverage": 0.0313,
    },
    "yeast_mulsupcon": {
        "example_f1": 0.659,
        "micro_f1": 0.667,
        "macro_f1": 0.475,
        "hamming_accuracy": 0.799,
    },
    "scene_mulsupcon": {
        "example_f1": 0.787,
        "micro_f1": 0.773,
        "macro_f1": 0.776,
        "hamming_accuracy": 0.922,
    },
    "yeast_mulsupcon_ld": {
        "hamming_accuracy": 0.805,
        "example_f1": 0.664,
        "micro_f1": 0.676,
        "macro_f1": 0.496,
        "precision_at_1": 0.769,
        "mean_average_precision": 0.521,
    },
    "scene_mulsupcon_ld": {
        "hamming_accuracy": 0.929,
        "example_f1": 0.813,
        "micro_f1": 0.805,
        "macro_f1": 0.766,
        "precision_at_1": 0.826,
        "mean_average_precision": 0.821,
    },
}


def _cv_cell(rows: dict, metric: str):
    def cell(m: str) -> str:
        mean, std = (
            rows[m]["cv"].get(metric, math.nan),
            rows[m]["cv"].get(f"{metric}_std", math.nan),
        )
        return f"{mean:.4f} ± {std:.4f}"

    return cell


def _holdout_cell(rows: dict, metric: str):
    def cell(m: str) -> str:
        return f"{rows[m]['holdout'].get(metric, math.nan):.4f}"

    return cell


def render(record: dict) -> str:
    space, model = record["space"], record["model"]
    budget = record["budget"]
    paper = PAPER.get(space, {})
    models = list(record["rows"])
    head = (
        ["metric", f"**{model}** CV", f"**{model}** holdout"]
        + [f"{m} CV" for m in models[1:]]
        + [f"{m} holdout" for m in models[1:]]
        + (["paper"] if paper else [])
    )
    lines = [
        f"#### `{space}`: {model} on {record['dataset']}"
        + (
            f", {round(record['known_labels'] * 100)} % of labels known"
            if record.get("known_labels", 1) < 1
            else ""
        ),
        "",
        f"Budget: {budget['trials']} trials ({_counts(record['trials'])}), "
        f"max {budget['max_epochs']} epochs, {budget['cv']} CV on {record['bags']['development']} "
        f"development bags, {budget['sampler']} sampler, {budget['pruner']}; "
        f"{record['search_seconds']:.0f} s on {record['device']}. Holdout: "
        f"{record['bags']['holdout']} bags ({record['holdout_kind']}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    order = [m for m in paper] + [m for m in ALL_METRICS if m not in paper]
    for metric in order:
        arrow = "↑" if mode_of(metric) == "max" else "↓"
        rows = record["rows"]
        cv = _cv_cell(rows, metric)
        hold = _holdout_cell(rows, metric)
        cells = (
            [cv(model), hold(model)] + [cv(m) for m in models[1:]] + [hold(m) for m in models[1:]]
        )
        if paper:
            cells.append(f"{paper[metric]:.4f}" if metric in paper else "")
        lines.append(f"| {metric} {arrow} | " + " | ".join(cells) + " |")
    best = record["rows"][model]
    config = ", ".join(f"{k} {v}" for k, v in sorted(best["config"].items()))
    lines += ["", f"Best configuration ({best['epochs']} epochs): {config}."]
    return "\n".join(lines)


def _counts(trials: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(trials.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="+", type=Path)
    args = parser.parse_args()
    print("\n\n".join(render(json.loads(p.read_text())) for p in args.records))


if __name__ == "__main__":
    main()
