"""Human-readable text for the terminal."""

from __future__ import annotations

import math
from typing import Any

from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, mode_of

# The metrics the four papers report first: the summary's table shows these (and the objective)
# unless --all-metrics asks for every one.
HEADLINE_METRICS = ("average_precision", "one_error", "ranking_loss", "coverage", "hamming_loss")


def _cell(value: dict[str, float] | None) -> str:
    if not value or math.isnan(value["mean"]):
        return "-"
    return f"{value['mean']:.4f}±{value['std']:.4f}"


def _duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "-"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes} min {rest:02d} s" if minutes else f"{rest} s"


def format_summary(summary: dict[str, Any], *, all_metrics: bool = False) -> str:
    """The end-of-search report, at most about 100 columns wide: what ran, the best
    configuration, its CV metrics beside the peers on the same folds (the objective and the
    papers' headline metrics; every metric with ``all_metrics``), a verdict on the objective
    against each peer, and the commands to run next."""
    best, peer = summary["best"], summary["peer"]
    cv = summary["cv"]
    trials = summary["trials"]
    data = summary.get("data") or {}
    metric, name = summary["metric"], summary["name"]
    on = data.get("name") or summary["dataset"]
    if data and not data.get("matches_space", True):
        on += f" (the space's dataset: {data['space_dataset']})"
    lines = [
        f"search {name!r}: {summary['model']} on {on} "
        f"({summary['bags']['development']} development bags, "
        f"{summary['bags']['holdout']} held out), "
        f"{cv['repeats']}x{cv['folds']}-fold CV, seed {summary['seed']}",
        f"  trials: {trials['total']} ({trials['completed']} completed, {trials['pruned']} "
        "pruned, "
        + (f"{trials['stopped']} stopped by the time budget, " if trials.get("stopped") else "")
        + f"{trials['error']} failed)",
        f"  {summary.get('fold_epochs', 0)} fold-epochs trained"
        + (f" ({summary['fidelity']} fidelity)" if summary.get("fidelity") else "")
        + f" in {_duration(summary.get('elapsed_seconds'))}",
        "",
        f"best trial {best['trial_id']} ({best['epochs']} epochs), optimising "
        f"{metric} ({summary['mode']}):",
    ]
    width = max(len(k) for k in best["config"]) if best["config"] else 0
    lines += [f"  {k:<{width}}  {v}" for k, v in sorted(best["config"].items())]
    peers = summary.get("peers") or (
        {peer["model"]: {"metrics": peer["metrics"]}} if peer.get("model") else {}
    )
    columns = [("best", best["metrics"])]
    columns += [(model, p["metrics"]) for model, p in peers.items()]
    widths = [max(14, len(title) + 1) for title, _ in columns]
    shown = [
        m
        for m in (*ALL_METRICS, *INSTANCE_METRICS)
        if m in best["metrics"] and (all_metrics or m == metric or m in HEADLINE_METRICS)
    ]
    header = "mean±std over the folds"
    label = max([len(header), *(len(m) + 4 for m in shown)]) + 2
    lines += [
        "",
        f"  {header:<{label}}"
        + "".join(f"{title:<{w}}" for (title, _), w in zip(columns, widths, strict=True)),
    ]
    for m in shown:
        arrow = "↑" if mode_of(m) == "max" else "↓"
        cells = [_cell(values.get(m)) for _, values in columns]
        lines.append(
            f"  {m + ' ' + arrow + (' *' if m == metric else ''):<{label}}"
            + "".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))
        )
    hidden = sum(1 for m in (*ALL_METRICS, *INSTANCE_METRICS) if m in best["metrics"]) - len(shown)
    lines.append(
        "  * the objective"
        + (f"; {hidden} more metrics with --all-metrics (or --json)" if hidden else "")
    )
    lines += _verdicts(summary, peers)
    lines += _next_commands(summary)
    return "\n".join(line.rstrip() for line in lines)


def _verdicts(summary: dict[str, Any], peers: dict[str, Any]) -> list[str]:
    """One line per peer on the objective: the paired test's verdict where there is one, and a
    warning where a peer scored at least as well as the tuned model."""
    metric, best = summary["metric"], summary["best"]["metrics"].get(summary["metric"]) or {}
    tests = summary.get("comparisons") or {}
    if not peers:
        return []
    lines = ["", f"the tuned model against the peers on {metric} (same folds):"]
    sign = 1.0 if mode_of(metric) == "max" else -1.0
    ours = best.get("mean", math.nan)
    for model, values in peers.items():
        theirs = (values.get("metrics") or {}).get(metric, {}).get("mean", math.nan)
        test = tests.get(model)
        if test is not None:
            said = (
                f"{test['verdict']} {model} (mean difference {test['mean_difference']:+.4f}, "
                f"one-sided Wilcoxon p = {test['p_value']:.3g}, {test['folds']} folds)"
            )
        else:
            said = f"against {model}: {ours:.4f} vs {theirs:.4f} (no per-fold values to test)"
        warn = math.isfinite(theirs) and sign * (theirs - ours) >= 0
        lines.append(("  WARNING: " if warn else "  ") + f"best {said}")
        if warn:
            lines.append(
                f"    {model} {theirs:.4f} against {ours:.4f}: more trials or time may help"
            )
    return lines


def _next_commands(summary: dict[str, Any]) -> list[str]:
    """MLflow's address and the commands to run next, with this search's name (and store, when
    a bare command would not find it) filled in."""
    from tuner.tracking import resolve_tracking_uri

    name, mlflow = summary["name"], summary["mlflow"]
    uri = str(mlflow.get("tracking_uri", ""))
    store = f" --tracking-uri {uri}" if uri and uri != resolve_tracking_uri(None) else ""
    return [
        "",
        f"MLflow: {uri}",
        f"  experiment {name!r}, parent run {mlflow['parent_run_id']}",
        "next:",
        f"  figures:   miml-tune report --name {name}{store}",
        f"  browse:    miml-tune ui{store}",
        f"  register:  miml-tune promote --name {name}{store}",
    ]


def format_promotion(result: dict[str, Any]) -> str:
    """What ``promote`` did: the version, the alias decision, holdout beside CV metrics."""
    registered = result["registered_model"]
    lines = [
        f"registered {registered} version {result['version']}: {result['model']} trial "
        f"{result['trial_id']} of search {result['name']!r}, refit for {result['epochs']} epochs "
        f"on the development data",
        f"alias {result['alias']!r} "
        + (
            f"-> version {result['version']}"
            if result["alias_moved"]
            else f"stays on version {result['champion_version']}"
        )
        + f" ({result['reason']})",
        "",
        f"  {'metric':<26}{'holdout':<12}CV mean  ({result['holdout_bags']} holdout bags, "
        f"{result['holdout_kind']})",
    ]
    for name in (*ALL_METRICS, *INSTANCE_METRICS):
        if name not in result["holdout"] and name not in result["cv"]:
            continue
        arrow = "↑" if mode_of(name) == "max" else "↓"
        marker = " *" if name == result["metric"] else ""
        holdout, cv = result["holdout"].get(name), result["cv"].get(name)
        lines.append(f"  {name + ' ' + arrow + marker:<26}{_number(holdout):<12}{_number(cv)}")
    timing = result["timing"]
    lines += [
        "",
        f"load with: mlflow.pyfunc.load_model({result['alias_uri']!r}) or "
        f"miml-tune predict --model {result['alias_uri']} --data FILE",
        f"took {timing['total_seconds']:.1f} s (refit {timing['refit_seconds']:.1f} s, log "
        f"{timing['log_seconds']:.1f} s, register {timing['register_seconds']:.1f} s)",
    ]
    return "\n".join(lines)


def _number(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.4f}"


def format_prediction(result: dict[str, Any]) -> str:
    """A short summary of ``predict``: bags, label sets, and metrics when the data has labels."""
    rule = (
        f"top {result['top_k']}" + (f" above {result['threshold']}" if result["threshold"] else "")
        if result["top_k"]
        else f"score >= {result['threshold']}"
    )
    frequent = ", ".join(f"{k} ({v})" for k, v in result["most_predicted"].items()) or "none"
    lines = [
        f"predicted {result['bags']} bags with {result['model_uri']} ({result['model']}) in "
        f"{result['seconds']:.2f} s; labels by {rule}: {result['labels_per_bag']} per bag",
        f"most predicted: {frequent}",
    ]
    if result.get("metrics"):
        shown = ("average_precision", "one_error", "ranking_loss", "hamming_loss", "macro_f1")
        values = ", ".join(
            f"{k} {result['metrics'][k]:.4f}" for k in shown if k in result["metrics"]
        )
        lines.append(f"against the file's own labels: {values}")
    if result.get("note"):
        lines.append(f"note: {result['note']}")
    if result.get("out"):
        lines.append(f"wrote {result['out']}")
    return "\n".join(lines)
