"""The ``miml-tune`` command line: thin click commands over the library's functions."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import click

from tuner.commands.active import active
from tuner.commands.options import _JSON, _TRACKING, json_line
from tuner.errors import MimlTuneError
from tuner.terminal import status_line

for _name, _value in (
    ("RAY_USAGE_STATS_ENABLED", "0"),
    ("MLFLOW_DISABLE_TELEMETRY", "true"),
    ("RAY_AIR_NEW_OUTPUT", "0"),
    ("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false"),
    # Against an http(s) tracking server MLflow prints "View run ... at: URL" on stdout each
    # time a run ends, which breaks --json output.
    ("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true"),
):
    os.environ.setdefault(_name, _value)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="miml-tune")
def cli() -> None:
    """Tune multi-label and MIML models with Ray Tune, Optuna and MLflow."""


_ALL_METRICS = click.option(
    "--all-metrics",
    is_flag=True,
    help="Show every metric in the summary [the objective and the papers' headline metrics].",
)


_QUIET = click.option(
    "--quiet", is_flag=True, help="No progress on standard error: only the result and errors."
)


@cli.command()
@click.option("--space", required=True, help="Space name (see `miml-tune spaces`) or YAML path.")
@click.option("--name", help="Search name: MLflow experiment and storage folder [space name].")
@click.option("--data", type=click.Path(), help="Run the space on this data file instead.")
@click.option(
    "--model",
    help="Run this registered model on the space's dataset, with the model's default space.",
)
@click.option(
    "--known-labels",
    type=float,
    help="Known-label proportion p in (0, 1] of the training labels (partial-label protocol) "
    "[the space's known_labels, else 1].",
)
@click.option("--bag-key", help="Name of the bag cell array in a .mat --data file.")
@click.option("--label-key", help="Name of the label matrix in a .mat --data file.")
@click.option(
    "--trials", type=int, help="Number of configurations to try [the space's budget.trials]."
)
@click.option(
    "--max-epochs",
    type=int,
    help="Epoch cap per trial (ASHA's max_t) [the space's budget.max_epochs].",
)
@click.option("--cv-folds", type=int, help="K of the repeated K-fold CV [the space's cv.folds].")
@click.option("--cv-repeats", type=int, help="Repeats of the K-fold CV [the space's cv.repeats].")
@click.option("--concurrency", type=int, help="Trials at once [CPUs / cpus-per-trial].")
@click.option("--cpus-per-trial", type=float, default=1.0, show_default=True)
@click.option(
    "--gpus-per-trial",
    type=float,
    default=0.0,
    show_default=True,
    help="GPUs per trial; fractions pack trials on one GPU.",
)
@click.option(
    "--max-failures",
    type=int,
    default=2,
    show_default=True,
    help="Retries of a trial whose worker process died (an error the trial raises is not retried).",
)
@click.option(
    "--seed", type=int, help="Seed of the sampler, the splits and the models [the space's seed]."
)
@click.option("--sampler", type=str, help="tpe | random | cmaes | gp | qmc [the space's sampler].")
@click.option("--scheduler", type=str, help="asha | fifo [the space's scheduler.name].")
@click.option(
    "--fidelity",
    type=str,
    help="repeats: a trial adds CV repeats as it survives ASHA's rungs (cheap for pruned "
    "trials) | epochs: every repeat from the first epoch [the space's scheduler.fidelity].",
)
@click.option(
    "--racing",
    type=str,
    help="wilcoxon: stop a trial once a one-sided Wilcoxon test over the folds it shares with "
    "the best finished trial says it is worse | none [the space's scheduler.racing].",
)
@click.option(
    "--time-budget",
    type=str,
    help="End the search after this wall time (90s, 30m, 2h); trials still training stop, "
    "the best is chosen among completed ones, resume runs the rest [the space's budget.time].",
)
@click.option("--tracking-uri", help="MLflow store [MLFLOW_TRACKING_URI or sqlite:///mlflow.db].")
@click.option(
    "--storage",
    help="Ray Tune results folder or URI (s3://, gs://; shared on a multi-node cluster) "
    "[./miml-tune-results].",
)
@click.option(
    "--address",
    help="Attach to a running Ray cluster: auto or HOST:PORT (its GCS) [embedded local].",
)
@click.option("--overwrite", is_flag=True, help="Start over an unfinished search of this name.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_QUIET
@_ALL_METRICS
def launch(space: str, as_json: bool, all_metrics: bool, quiet: bool, **options: Any) -> None:
    """Run a hyper-parameter search and print the best configuration.

    Every search setting left out here takes the space file's value (`miml-tune spaces show
    NAME` prints it).
    """
    from tuner.launch_checks import check_counts
    from tuner.search import LaunchOptions
    from tuner.search import launch as run_search
    from tuner.spec import load_space

    if not quiet:
        status_line(
            f"miml-tune launch: reading space {space}, then the data, the MLflow store and Ray "
            "(the first trial starts in about a minute)..."
        )
    check_counts(options)
    spec = load_space(space, model=options.pop("model")).with_overrides(
        known_labels=options.pop("known_labels"),
        trials=options.pop("trials"),
        max_epochs=options.pop("max_epochs"),
        cv_folds=options.pop("cv_folds"),
        cv_repeats=options.pop("cv_repeats"),
        concurrency=options.pop("concurrency"),
        seed=options.pop("seed"),
        sampler=options.pop("sampler"),
        scheduler=options.pop("scheduler"),
        fidelity=options.pop("fidelity"),
        racing=options.pop("racing"),
        time_budget=_duration(options.pop("time_budget")),
    )
    summary = run_search(spec, LaunchOptions(**options, progress=_progress(quiet)))
    _emit(summary, as_json, all_metrics)


def _progress(quiet: bool) -> Any:
    """Where a search writes its progress: standard error, or nowhere with ``--quiet``."""
    return open(os.devnull, "w") if quiet else None


def _duration(text: str | None) -> float | None:
    from tuner.spec import parse_duration

    return None if text is None else parse_duration(text)


def _emit(summary: dict[str, Any], as_json: bool, all_metrics: bool = False) -> None:
    from tuner.output import format_summary

    if as_json:
        click.echo(json_line(summary))
    else:
        click.echo(format_summary(summary, all_metrics=all_metrics))


@cli.command()
@click.option("--name", required=True, help="Search name.")
@click.option("--tracking-uri", help="MLflow store [MLFLOW_TRACKING_URI or sqlite:///mlflow.db].")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@_ALL_METRICS
def best(name: str, tracking_uri: str | None, as_json: bool, all_metrics: bool) -> None:
    """Print the best configuration of a finished search again, from MLflow."""
    from tuner import tracking

    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri, existing=True)
    _emit(tracking.read_summary(name, uri), as_json, all_metrics)


@cli.command()
@click.option("--name", required=True, help="Search name (its latest finished launch).")
@click.option("--alias", default="champion", show_default=True, help="Alias to move.")
@click.option("--force", is_flag=True, help="Move the alias even if the holdout score is worse.")
@click.option("--registered-name", help="Registered model to add a version to [the search name].")
@click.option("--data", type=click.Path(), help="The search's data file, if it has moved.")
@_TRACKING
@_JSON
def promote(as_json: bool, **options: Any) -> None:
    """Refit the best trial on all development data, score it on the holdout, register it."""
    from tuner.output import format_promotion
    from tuner.promote import promote as run_promote

    progress = None if as_json else (lambda message: click.echo(message, err=True))
    result = run_promote(options.pop("name"), **options, progress=progress)
    click.echo(json_line(result) if as_json else format_promotion(result))


@cli.command()
@click.option(
    "--model",
    "model_uri",
    required=True,
    help="models:/NAME@champion, models:/NAME/3, runs:/ID/model.",
)
@click.option(
    "--data", required=True, type=click.Path(), help="Bags to score (any supported format)."
)
@click.option(
    "--out",
    type=click.Path(),
    help="Write scores and label sets here (.csv or .jsonl) [CSV to stdout].",
)
@click.option("--threshold", type=float, help="Predict labels scoring >= T [0.5].")
@click.option(
    "--top-k", type=int, help="Predict the K best labels of each bag (with --threshold: at most K)."
)
@click.option("--bag-key", help="Name of the bag cell array in a .mat --data file.")
@click.option("--label-key", help="Name of the label matrix in a .mat --data file.")
@click.option(
    "--trust-pickled-model",
    is_flag=True,
    help="Load a model promoted by miml-tune 0.1 (a pickle: loading it runs code from the model "
    "store); only for a store you trust.",
)
@_TRACKING
@_JSON
def predict(model_uri: str, data: str, as_json: bool, **options: Any) -> None:
    """Score bags with a registered model; write per-bag scores and predicted label sets."""
    from tuner.output import format_prediction
    from tuner.serving import predict as run_predict

    out = options.pop("out")
    to_stdout = out is None and not as_json
    if to_stdout:  # CSV on stdout, the summary on stderr
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            path = str(Path(tmp) / "predictions.csv")
            result = run_predict(model_uri, data, out=path, **options)
            click.echo(Path(path).read_text(), nl=False)
        result["out"] = None
        click.echo(format_prediction(result), err=True)
        return
    result = run_predict(model_uri, data, out=out, **options)
    if as_json:
        click.echo(json_line(result))
    else:
        click.echo(format_prediction(result))


@cli.command()
@click.option("--name", required=True, help="Search name (its latest finished launch).")
@click.option(
    "--out",
    type=click.Path(),
    help="Folder for index.html and the figures [./miml-tune-reports/NAME].",
)
@click.option(
    "--top", type=int, default=5, show_default=True, help="Trials in the top-trial figures."
)
@_TRACKING
def report(name: str, out: str | None, top: int, tracking_uri: str | None) -> None:
    """Write an HTML report with figures of a finished search and log it to its parent run."""
    from pathlib import Path

    from tuner import tracking
    from tuner.report import build_report

    if top < 1:
        raise MimlTuneError(f"--top must be an integer >= 1, got {top}")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri, existing=True)
    result = build_report(name, uri, Path(out) if out else None, top=top)
    click.echo(result["table"])
    click.echo(f"\nreport: {result['html']} ({len(result['figures'])} figures)")


@cli.command()
@click.option("--port", type=int, default=5000, show_default=True, help="Port on 127.0.0.1.")
@_TRACKING
def ui(port: int, tracking_uri: str | None) -> None:
    """Open the MLflow UI on 127.0.0.1 for the searches' tracking store (Ctrl-C stops it)."""
    from tuner import tracking
    from tuner.ui import serve_ui

    status = serve_ui(tracking.resolve_tracking_uri(tracking_uri), port)
    if status:
        sys.exit(status)


@cli.command()
@click.option("--name", required=True, help="Search name (as given to launch).")
@click.option("--storage", help="The launch's --storage [./miml-tune-results].")
@click.option("--address", help="Ray cluster to run on: auto or HOST:PORT.")
@click.option("--tracking-uri", help="MLflow store [the one the search logged to].")
@click.option("--data", type=click.Path(), help="The search's data file, if it has moved.")
@click.option(
    "--force", is_flag=True, help="Resume a search marked running on another machine (gone)."
)
@click.option(
    "--time-budget",
    type=str,
    help="Wall time for the resumed run (90s, 30m, 2h) [the search's own budget, afresh].",
)
@_JSON
@_ALL_METRICS
@_QUIET
def resume(as_json: bool, all_metrics: bool, **options: Any) -> None:
    """Continue an interrupted search: finished trials stay, the sampler keeps its history."""
    from tuner.search import resume as run_resume

    options["time_budget"] = _duration(options.pop("time_budget"))
    progress = _progress(options.pop("quiet"))
    _emit(run_resume(options.pop("name"), **options, progress=progress), as_json, all_metrics)


@cli.command(context_settings={"ignore_unknown_options": True})
@click.option("--address", required=True, help="Ray dashboard / job server: http://HEAD:8265.")
@click.option("--tracking-uri", help="MLflow tracking URI the job logs to (a shared server).")
@click.option("--wait", is_flag=True, help="Wait for the job to end and print its logs.")
@_JSON
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def submit(
    address: str, tracking_uri: str | None, wait: bool, as_json: bool, command: tuple[str, ...]
) -> None:
    """Submit a search as a Ray job: miml-tune submit --address URL -- launch --space birds."""
    from tuner.jobs import submit as run_submit

    result = run_submit(
        address,
        list(command),
        parse_options=_parse_options,
        tracking_uri=tracking_uri,
        wait=wait,
        echo=click.echo,
    )
    if as_json:
        click.echo(json.dumps(result, sort_keys=True))
    else:
        click.echo(f"submitted job {result['job_id']} to {result['address']}")
        if "status" in result:
            click.echo(f"job {result['job_id']}: {result['status']}")
    if wait and result.get("status") != "SUCCEEDED":
        sys.exit(1)


def _parse_options(command: str, args: list[str]) -> dict[str, Any]:
    """The options of ``miml-tune COMMAND ARGS`` as the command would get them, without running
    it (for ``submit``); a bad option is one line naming the command."""
    try:
        ctx = cli.commands[command].make_context(f"miml-tune {command}", args)
    except click.ClickException as exc:
        raise MimlTuneError(f"{command}: {exc.format_message()}") from None
    return dict(ctx.params)


@cli.group()
def jobs() -> None:
    """List, inspect, follow and stop submitted search jobs."""


_ADDRESS = click.option("--address", required=True, help="Ray job server: http://HEAD:8265.")


@jobs.command("list")
@_ADDRESS
@_JSON
def jobs_list(address: str, as_json: bool) -> None:
    """The cluster's jobs, newest first."""
    from tuner.jobs import list_jobs

    rows = list_jobs(address)
    if as_json:
        click.echo(json.dumps(rows, sort_keys=True))
        return
    _table(
        ("job id", "status", "started", "entrypoint"),
        [(r["job_id"], r["status"], r["start_time"] or "-", r["entrypoint"]) for r in rows],
    )


@jobs.command("status")
@click.argument("job_id")
@_ADDRESS
@_JSON
def jobs_status(job_id: str, address: str, as_json: bool) -> None:
    """One job's status."""
    from tuner.jobs import job_status

    info = job_status(address, job_id)
    if as_json:
        click.echo(json.dumps(info, sort_keys=True))
    else:
        message = f" ({info['message']})" if info.get("message") else ""
        click.echo(f"{info['job_id']}: {info['status']}{message}")


@jobs.command("logs")
@click.argument("job_id")
@_ADDRESS
@click.option("--follow", "-f", is_flag=True, help="Keep printing until the job ends.")
def jobs_logs(job_id: str, address: str, follow: bool) -> None:
    """A job's output (the driver's stdout and stderr)."""
    from tuner.jobs import job_logs

    job_logs(address, job_id, follow=follow, echo=click.echo)


@jobs.command("stop")
@click.argument("job_id")
@_ADDRESS
def jobs_stop(job_id: str, address: str) -> None:
    """Stop a running job (its search ends as interrupted and can be resumed)."""
    from tuner.jobs import stop_job

    info = stop_job(address, job_id)
    click.echo(f"{info['job_id']}: {info['status']}")


@cli.group(invoke_without_command=True)
@click.pass_context
def spaces(ctx: click.Context) -> None:
    """List the shipped search spaces."""
    if ctx.invoked_subcommand is not None:
        return
    from tuner.spec import load_space, model_space_names, space_names

    def grid(spec: Any) -> str:
        return "inf" if spec.grid_size == float("inf") else f"{int(spec.grid_size):,}"

    rows: list[tuple[str, ...]] = []
    for name in space_names():
        spec = load_space(name)
        rows.append(
            (name, spec.model, spec.dataset, str(len(spec.params)), grid(spec), spec.description)
        )
    _table(("space", "model", "dataset", "params", "grid", "description"), rows)
    # The models' default spaces, as `launch --space birds --model MODEL` would run them.
    rows = []
    for model in model_space_names():
        spec = load_space("birds", model=model)
        rows.append((model, str(len(spec.params)), grid(spec), spec.description))
    click.echo("\nmodel defaults (launch --space SPACE --model MODEL):")
    _table(("model", "params", "grid", "description"), rows)


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    n = len(header) - 1
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(n)]
    for row in [header, *rows]:
        click.echo(
            "  ".join(c.ljust(w) for c, w in zip(row[:n], widths, strict=True)) + "  " + row[n]
        )


@spaces.command("show")
@click.argument("name")
@click.option("--model", help="Show the space as `launch --model MODEL` would run it.")
def spaces_show(name: str, model: str | None) -> None:
    """Print one space file."""
    from tuner.spec import load_space

    click.echo(load_space(name, model=model).text.rstrip())


@cli.group()
def data() -> None:
    """Inspect datasets."""


@data.command("info")
@click.argument("dataset")
@click.option("--data", "path", type=click.Path(), help="Read this file for a registered name.")
@click.option("--bag-key", help="Name of the bag cell array in a .mat file.")
@click.option("--label-key", help="Name of the label matrix in a .mat file.")
@click.option("--json", "as_json", is_flag=True, help="Print as one JSON object.")
def data_info(
    dataset: str,
    path: str | None,
    bag_key: str | None,
    label_key: str | None,
    as_json: bool,
) -> None:
    """Describe a dataset given by registered name or path."""
    from tuner.data import describe, format_description, load_dataset

    info = describe(load_dataset(dataset, data=path, bag_key=bag_key, label_key=label_key))
    click.echo(json.dumps(info) if as_json else format_description(info))


def main(argv: list[str] | None = None) -> None:
    """Entry point: runs the CLI, turning user errors into one line and exit status 2."""
    try:
        cli.main(args=argv, prog_name="miml-tune", standalone_mode=False)
    except MimlTuneError as exc:
        status_line("")
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        status_line("")
        click.echo(f"error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code if exc.exit_code else 2)
    except click.Abort as exc:
        # click turns a KeyboardInterrupt (Ctrl-C, or an interrupted Tune run) into Abort.
        cause = exc.__cause__ or exc.__context__
        reason = f": {cause}" if isinstance(cause, KeyboardInterrupt) and str(cause) else ""
        click.echo(f"\ninterrupted{reason}", err=True)
        sys.exit(130)
    except KeyboardInterrupt as exc:
        click.echo(f"\ninterrupted{': ' + str(exc) if str(exc) else ''}", err=True)
        sys.exit(130)
    except Exception as exc:
        from tuner.tracking import damaged_store_message

        message = damaged_store_message(exc)
        status_line("")
        if message is None:
            raise
        click.echo(f"error: {message}", err=True)
        sys.exit(2)
    sys.exit(0)


cli.add_command(active)


if __name__ == "__main__":
    main()
