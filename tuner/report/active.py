"""The active-learning part of a search's report: the newest finished ``miml-tune active
simulate`` of the search's space, if there is one (its learning curves and table)."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from tuner import tracking

FIGURE = "active_learning.png"


def latest_simulation(uri: str, space: str, folder: Path) -> dict[str, Any] | None:
    """Copies the newest finished simulation's figure of ``space`` into ``folder`` (as
    :data:`FIGURE`) and returns its result, or ``None`` when the store has none."""
    client = tracking.client(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        filter_string=f"tags.{tracking.ROLE_TAG} = 'active' and tags.`miml_tune.space` = "
        f"'{space}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not runs:
        return None
    run_id = runs[0].info.run_id
    result = json.loads(Path(client.download_artifacts(run_id, "active.json")).read_text())
    figure = Path(client.download_artifacts(run_id, "learning_curves.png"))
    (folder / FIGURE).write_bytes(figure.read_bytes())
    return dict(result, run_id=run_id)


def section_html(result: dict[str, Any]) -> str:
    """The report's section: settings, the figure and a row per strategy."""
    esc = html.escape
    rows = []
    for strategy, entry in result["strategies_summary"].items():
        cells = [esc(strategy)]
        for metric in ("average_precision", "macro_f1"):
            stats = entry[metric]
            test = stats.get("vs_random")
            verdict = "–" if test is None else f"{test['verdict']} (p {test['p_value']:.3g})"
            reach = stats["fraction_to_95"]
            cells += [
                f"{stats['area']:.4f}",
                "not reached" if reach is None else f"{reach:.0%}",
                esc(verdict),
            ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = (
        "<tr><th>strategy</th><th>AP area</th><th>AP: labelled for 95 %</th><th>AP vs random</th>"
        "<th>macro-F1 area</th><th>macro-F1: labelled for 95 %</th><th>macro-F1 vs random</th></tr>"
    )
    return (
        "<h2>Active learning</h2>\n"
        f"<p>{esc(str(result['model']))} ({esc(str(result['configuration']))}) on "
        f"{esc(str(result['dataset']))}: start from {result['start']:.0%} of "
        f"{result['development_bags']} development bags, {result['rounds']} rounds of "
        f"{result['batch']}, {result['seeds']} seeds, scored on the holdout after every round "
        f"(run {esc(str(result['run_id']))}). Area: the mean holdout metric over the labelled "
        "range; vs random: a one-sided Wilcoxon signed-rank test over the seeds.</p>\n"
        f'<figure><img src="{FIGURE}" alt="active learning curves"><figcaption>Holdout metric '
        "against bags labelled, per strategy: the mean over seeds in a band of one standard "
        "deviation; random dashed.</figcaption></figure>\n"
        f'<div class="wide"><table>{head}{"".join(rows)}</table></div>\n'
    )
