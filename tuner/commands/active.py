"""``miml-tune active``: which bags to label next (query) and how much labels a strategy saves
(simulate)."""

from __future__ import annotations

import sys
from typing import Any

import click

from tuner.active.strategies import STRATEGIES
from tuner.commands.options import _JSON, _TRACKING, json_line


@click.group()
def active() -> None:
    """Active learning: rank unlabelled bags for an expert, or simulate strategies."""


@active.command()
@click.option(
    "--model", "model_uri", required=True,
    help="models:/NAME@champion, models:/NAME/3, runs:/ID/model.",
)  # fmt: skip
@click.option(
    "--pool", required=True, type=click.Path(),
    help="Unlabelled bags: MIML ARFF (labels ?), a .csv in the model's input form, a .mat.",
)  # fmt: skip
@click.option("--batch", required=True, type=int, help="How many bags to label next.")
@click.option(
    "--strategy", default="uncertainty", show_default=True,
    help=f"Query strategy: {', '.join(STRATEGIES)}.",
)  # fmt: skip
@click.option("--seed", default=0, show_default=True, help="Seed for ties and random.")
@click.option("--out", type=click.Path(), help="Write the ranking here (.csv) [table on stdout].")
@click.option("--bag-key", help="Name of the bag cell array in a .mat pool.")
@click.option(
    "--trust-pickled-model", is_flag=True,
    help="Load a model promoted by miml-tune 0.1 (a pickle); only for a store you trust.",
)  # fmt: skip
@_TRACKING
@_JSON
def query(model_uri: str, pool: str, as_json: bool, **options: Any) -> None:
    """Rank a pool of unlabelled bags and print the BATCH to label next."""
    from tuner.active.query import rank_pool

    result = rank_pool(model_uri, pool, **options)
    if as_json:
        click.echo(json_line(result))
        return
    click.echo(
        f"{result['batch']} of {result['pool_bags']} bags to label next by {result['strategy']} "
        f"(model {model_uri}, seed {result['seed']})"
    )
    click.echo(f"{'rank':>4}  {'bag_id':<24} {'utility':>9}  top labels (score)")
    for row in result["rows"]:
        top = sorted(row["scores"].items(), key=lambda kv: -kv[1])[:3]
        shown = ", ".join(f"{k} {v:.2f}" for k, v in top)
        click.echo(f"{row['rank']:>4}  {row['bag_id']:<24} {row['utility']:>9.4g}  {shown}")
    if result["out"]:
        click.echo(f"ranking written to {result['out']}")


@active.command()
@click.option("--space", required=True, help="Space name or YAML path (its data and holdout).")
@click.option("--data", type=click.Path(), help="Data file instead of the space's dataset.")
@click.option(
    "--strategies", default="random,uncertainty,margin,kcenter", show_default=True,
    help=f"Comma-separated, among {', '.join(STRATEGIES)}.",
)  # fmt: skip
@click.option("--model", help="Model to train [the space's]; a peer (bag_mean_linear) is fast.")
@click.option(
    "--search",
    help="Finished search whose best configuration is trained [the space's name, if it exists; "
    "else the model's starting point].",
)
@click.option("--start", default=0.1, show_default=True, help="Labelled fraction to start from.")
@click.option("--batch", default=10, show_default=True, help="Bags labelled per round.")
@click.option("--rounds", default=5, show_default=True, help="Query rounds.")
@click.option("--seeds", default=5, show_default=True, help="Repetitions (seeds 0..N-1).")
@click.option("--name", help="MLflow experiment and run name [SPACE-active].")
@click.option("--out", type=click.Path(), help="Folder for learning_curves.png and active.json.")
@_TRACKING
@_JSON
def simulate(space: str, strategies: str, as_json: bool, **options: Any) -> None:
    """Simulate strategies with the known labels as the expert; score each round on the
    holdout."""
    from tuner.active.run import simulate as run_simulate
    from tuner.active.simulate import CURVE_METRICS, verdict_line

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    progress = None if as_json else sys.stderr
    result = run_simulate(space, strategies=names, progress=progress, **options)
    if as_json:
        click.echo(json_line(result))
        return
    click.echo(
        f"active learning on {result['dataset']} ({result['model']}, {result['configuration']}): "
        f"{result['seeds']} seeds, start {result['start']:.0%} of {result['development_bags']} "
        f"bags, {result['rounds']} rounds of {result['batch']}"
    )
    for metric in CURVE_METRICS:
        full = sum(v[metric] for v in result["full_label"].values()) / len(result["full_label"])
        click.echo(f"{metric}: area under the learning curve (all bags labelled: {full:.4f})")
        for strategy, entry in result["strategies_summary"].items():
            click.echo(f"  {verdict_line(strategy, entry, metric)}")
    where = result.get("out") or "the MLflow run"
    click.echo(f"learning curves: {where} (run {result['mlflow']['parent_run_id']})")
