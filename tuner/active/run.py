"""Running an active-learning simulation: the configuration, MLflow runs, the figure."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from tuner.active.files import written_whole
from tuner.active.simulate import (
    CURVE_METRICS,
    Curve,
    check_settings,
    full_label_reference,
    initial_labelled,
    run_curve,
    summarise,
)
from tuner.errors import MimlTuneError

ROLE = "active"  # the value of the role tag on a simulation's runs


def configuration(
    spec: Any, model: str, search: str | None, uri: str
) -> tuple[dict[str, Any], str]:
    """The fixed configuration a simulation trains, and where it comes from: the best of the
    finished search ``search`` (by default the space's name) when it tuned ``model``, else the
    model's starting point in the space (or its defaults, for a model the space does not tune)."""
    name = search or spec.name
    try:
        summary = _read_summary(name, uri)
    except MimlTuneError:
        if search is not None:
            raise
        summary = None
    if summary is not None and summary.get("model") == model and summary.get("best"):
        return dict(summary["best"]["config"]), f"best of search {name!r}"
    if summary is not None and search is not None:
        if summary.get("model") == model:
            raise MimlTuneError(
                f"search {name!r} has no completed trial to take a best configuration from; "
                "leave --search out to use the model's starting point"
            )
        raise MimlTuneError(
            f"search {name!r} tuned {summary.get('model')!r}, not {model!r}; pass --search with "
            f"a search of {model!r} or leave it out to use the model's starting point"
        )
    if model == spec.model:
        fixed = spec.searched()[1]
        return {**fixed, **spec.starting_point()}, f"starting point of space {spec.name!r}"
    return {}, f"defaults of {model!r}"


def _read_summary(name: str, uri: str) -> dict[str, Any]:
    from tuner import tracking

    return tracking.read_summary(name, uri)


def simulate(
    space: str,
    *,
    strategies: Sequence[str],
    start: float = 0.1,
    batch: int = 10,
    rounds: int = 5,
    seeds: int = 5,
    data: str | None = None,
    model: str | None = None,
    search: str | None = None,
    name: str | None = None,
    tracking_uri: str | None = None,
    out: str | None = None,
    progress: TextIO | None = None,
) -> dict[str, Any]:
    """Runs the simulation (see :mod:`tuner.active.simulate`), logs it to MLflow (a parent run,
    a child run per strategy and seed with the holdout metrics by round, step = bags labelled)
    and returns its summary; the learning-curve figure goes to the parent run and ``out``."""
    from tuner import tracking
    from tuner.learners import resolve_learner
    from tuner.search.data import prepare_data
    from tuner.spec import load_space

    spec = load_space(space)
    model_name = model or spec.model
    resolve_learner(model_name)  # an unknown model fails in one line, with its suggestions
    for strategy in strategies:  # and so does an unknown strategy, before any data is read
        check_settings([strategy], 0.5, 1, 1, 1, 10**6)
    full, dev, holdout = prepare_data(spec, data)
    if holdout is None:
        raise MimlTuneError(
            f"space {spec.name!r} holds out no bags (holdout 0); a simulation scores every round "
            "on the holdout: set holdout in the space"
        )
    check_settings(strategies, start, batch, rounds, seeds, len(dev.bags))
    target = _check_out(out)
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri)
    config, source = configuration(spec, model_name, search, uri)
    run_name = name or f"{spec.name}-active"
    client = tracking.client(uri)
    experiment = tracking.ensure_experiment(client, run_name, uri)
    settings = {
        "space": spec.name, "model": model_name, "configuration": source,
        "strategies": ",".join(strategies), "start": start, "batch": batch, "rounds": rounds,
        "seeds": seeds, "dataset": full.name, "development_bags": len(dev.bags),
        "holdout_bags": len(holdout.bags),
    }  # fmt: skip
    parent = client.create_run(
        experiment, run_name=run_name, tags={tracking.ROLE_TAG: ROLE, "miml_tune.space": spec.name}
    )
    parent_id = parent.info.run_id
    try:
        tracking.log_params(client, parent_id, {**settings, **config})
        curves, full_ref = _run_all(
            client, experiment, parent_id, model_name, config, dev, holdout, strategies,
            start, batch, rounds, seeds, progress,
        )  # fmt: skip
        summary = summarise(curves, full_ref, len(dev.bags))
        result = {
            "name": run_name,
            **settings,
            "config": config,
            "full_label": {str(s): v for s, v in full_ref.items()},
            "strategies_summary": summary,
            "mlflow": {
                "tracking_uri": uri,
                "experiment_id": experiment,
                "parent_run_id": parent_id,
            },
        }
        with tempfile.TemporaryDirectory() as tmp:
            figure = Path(tmp) / "learning_curves.png"
            plot_curves(summary, figure, f"{spec.name}: {model_name}, batch {batch}")
            (Path(tmp) / "active.json").write_text(json.dumps(result, indent=2, default=str))
            client.log_artifact(parent_id, str(figure))
            client.log_artifact(parent_id, str(Path(tmp) / "active.json"))
            if target is not None:
                for part in (figure, Path(tmp) / "active.json"):
                    with written_whole(target / part.name, "wb") as handle:
                        handle.write(part.read_bytes())
                result["out"] = str(target)
        for strategy, entry in summary.items():
            for metric in CURVE_METRICS:
                client.log_metric(parent_id, f"area.{strategy}.{metric}", entry[metric]["area"])
        client.set_terminated(parent_id, "FINISHED")
        return result
    except BaseException:
        client.set_terminated(parent_id, "FAILED")
        raise


def _check_out(out: str | None) -> Path | None:
    """The ``--out`` folder, created now (before hours of training), or one line why not."""
    if out is None:
        return None
    target = Path(out).expanduser()
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MimlTuneError(
            f"--out {target}: cannot create this folder ({exc.strerror or exc}); give a folder "
            "that can be written"
        ) from None
    if not os.access(target, os.W_OK | os.X_OK):
        raise MimlTuneError(f"--out {target}: the folder is not writable; give another")
    return target


def _run_all(
    client: Any,
    experiment: str,
    parent_id: str,
    model: str,
    config: dict[str, Any],
    dev: Any,
    holdout: Any,
    strategies: Sequence[str],
    start: float,
    batch: int,
    rounds: int,
    seeds: int,
    progress: TextIO | None,
) -> tuple[list[Curve], dict[int, dict[str, float]]]:
    """Every strategy's curve for every seed, each in its own child run."""
    from tuner import tracking

    curves: list[Curve] = []
    full_ref: dict[int, dict[str, float]] = {}
    for seed in range(seeds):
        full_ref[seed] = full_label_reference(model, config, dev, holdout, seed)
        first = initial_labelled(dev.labels, start, seed)
        for strategy in strategies:
            run = client.create_run(
                experiment,
                run_name=f"{strategy}-seed{seed}",
                tags={"mlflow.parentRunId": parent_id, tracking.ROLE_TAG: "active-curve",
                      "miml_tune.strategy": strategy, "miml_tune.seed": str(seed)},
            )  # fmt: skip
            run_id = run.info.run_id

            def log_round(curve: Curve, run_id: str = run_id) -> None:
                values = {m: v[-1] for m, v in curve.metrics.items()}
                tracking.log_metrics(client, run_id, values, step=curve.labelled[-1])
                if progress is not None:
                    shown = ", ".join(f"{k} {v:.4f}" for k, v in values.items())
                    progress.write(
                        f"seed {curve.seed} {curve.strategy}: {curve.labelled[-1]} labelled, "
                        f"holdout {shown}\n"
                    )
                    progress.flush()

            try:
                curve = run_curve(
                    strategy, seed, model, config, dev, holdout, first, batch, rounds, log_round
                )
            except BaseException:
                client.set_terminated(run_id, "FAILED")
                raise
            client.log_text(run_id, "\n".join(curve.queried) + "\n", "queried_bags.txt")
            client.set_terminated(run_id, "FINISHED")
            curves.append(curve)
    return curves, full_ref


def plot_curves(summary: dict[str, Any], path: Path, title: str) -> None:
    """Holdout average precision and macro-F1 against bags labelled: a line per strategy (the
    mean over seeds) in a band of one standard deviation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(11, 4.2), constrained_layout=True)
    for ax, metric in zip(axes, CURVE_METRICS, strict=True):
        for strategy, entry in summary.items():
            x = entry["labelled"]
            mean = entry[metric]["curve_mean"]
            std = entry[metric]["curve_std"]
            style = {"color": "black", "linestyle": "--"} if strategy == "random" else {}
            line = ax.plot(x, mean, marker="o", markersize=3, label=strategy, **style)[0]
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.12)
        ax.set_xlabel("bags labelled")
        ax.set_ylabel(f"holdout {metric} (higher is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.savefig(path, dpi=110)
    plt.close(fig)
