"""One trial: one configuration under the whole cross-validation protocol.

Training is epoch-synchronous: every fold's model trains one epoch and is validated, then the
trial reports the fold mean and fold standard deviation of every metric. ASHA therefore compares
trials at equal epochs on exactly the statistic the search optimises.

:func:`run_cv` is plain Python (no Ray): the search wraps it in :func:`tune_trainable`, the peer
model and the benchmarks call it directly.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from tuner.cv import Fold, cv_folds, hide_labels
from tuner.data import MIMLDataset
from tuner.learners import resolve_learner
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS, compute, compute_instances

FOLD_VALUES = "fold_values"  # a row's key: the objective on each fold (the racing rule reads it)

Reporter = Callable[[dict[str, Any]], None]


class NonFiniteLossError(FloatingPointError):
    """A fold's training loss became NaN or infinite: the configuration diverged."""


@dataclass(frozen=True)
class CVProtocol:
    """How a configuration is judged: K folds repeated, seeded."""

    folds: int = 3
    repeats: int = 5
    seed: int = 0
    known_labels: float = 1.0  # SARB's known-label proportion p; 1 keeps every label

    def training_labels(self, labels: np.ndarray, fold_index: int, partial: bool) -> np.ndarray:
        """The labels a fold's model trains on: with ``known_labels < 1`` each is hidden with
        probability ``1 - p`` (seeded per fold, after the folds are made). Learners that take
        partial labels get -1 for a hidden label, the others a 0 (an unknown label read as
        absent, the usual baseline of the partial-label literature)."""
        if self.known_labels >= 1:
            return labels
        hidden = hide_labels(labels, self.known_labels, self.seed * 1000 + fold_index + 7919)
        return hidden if partial else np.maximum(hidden, 0).astype(np.uint8)

    def splits(self, labels: np.ndarray) -> list[Fold]:
        return cv_folds(labels, self.folds, self.repeats, self.seed)


@dataclass
class CVResult:
    """What :func:`run_cv` measured: the last epoch's summary plus every epoch's history."""

    epochs: int
    summary: dict[str, float]
    per_fold: dict[str, list[float]]
    history: list[dict[str, Any]] = field(default_factory=list)


def trial_epochs(config: Mapping[str, Any], max_epochs: int, default: int) -> int:
    """Epochs a configuration trains: its own ``epochs`` (or the model's), capped by the budget."""
    return max(1, min(int(config.get("epochs", default)), max_epochs))


def rung_milestones(max_epochs: int, grace_period: int, reduction_factor: float) -> list[int]:
    """The epochs at which ASHA compares trials (Ray Tune's ``ASHAScheduler`` rungs:
    ``grace_period * reduction_factor**k`` below ``max_epochs``), in increasing order."""
    if grace_period >= max_epochs or reduction_factor <= 1:
        return []
    count = int(math.log(max_epochs / grace_period) / math.log(reduction_factor) + 1)
    out = sorted({int(grace_period * reduction_factor**k) for k in range(count)})
    return [m for m in out if m < max_epochs]


@dataclass(frozen=True)
class RepeatsSchedule:
    """CV repeats as a second fidelity: how many repeats of the K folds a trial trains at each
    epoch.

    A trial starts on the first repeat's K folds; each rung it survives (ASHA let it go past a
    milestone) multiplies its repeats by ``growth``, up to all of them; its last epoch is always
    trained under the full protocol, so that a completed trial is judged on every fold. Repeats
    are added in order (repeat ``r`` always uses the seed ``seed + r``), so every trial that
    reaches a rung has been scored there on the very same folds: comparisons are paired.

    Args:
        milestones: the scheduler's rung epochs (:func:`rung_milestones`); none gives the full
            protocol from the first epoch.
        repeats: the protocol's repeats R.
        growth: factor by which the repeats grow at each rung passed.
    """

    milestones: tuple[int, ...]
    repeats: int
    growth: float = 3.0

    def at(self, epoch: int) -> int:
        """Repeats trained at ``epoch`` (1-based), before a trial's last epoch adds the rest."""
        if not self.milestones:
            return self.repeats
        passed = sum(epoch > m for m in self.milestones)
        return max(1, min(self.repeats, round(self.growth**passed)))


def run_cv(
    model: str,
    config: Mapping[str, Any],
    data: MIMLDataset,
    protocol: CVProtocol,
    *,
    max_epochs: int = 1_000_000,
    metrics: Sequence[str] = ALL_METRICS,
    device: torch.device | str = "cpu",
    report: Reporter | None = None,
    schedule: RepeatsSchedule | None = None,
    folds: Sequence[Fold] | None = None,
    objective: str | None = None,
) -> CVResult:
    """Trains and validates ``model`` with ``config`` on every fold of ``data``, epoch by epoch.

    Args:
        model: registered model name.
        config: hyper-parameters (keys the model declares).
        data: the development data; the holdout never reaches this function during a search.
        protocol: folds, repeats and seed.
        max_epochs: cap on the configuration's own number of epochs.
        metrics: names of the metrics to compute on each validation fold.
        device: where the fold models train.
        report: called after every epoch with the epoch's summary (the trial's ``tune.report``).
        schedule: the repeats trained at each epoch (CV repeats as a second fidelity); ``None``
            trains every repeat from the first epoch. Repeats added later first catch up to the
            current epoch, so at its last epoch every fold model has trained every epoch.
        folds: ``protocol.splits(data.labels)`` when the caller has them already (a search's
            driver makes them once for every trial, so trial workers need not import the
            stratifier); made here otherwise.
        objective: a metric whose value on each fold every row also carries (under
            ``fold_values``), for the search's racing rule.

    Returns:
        The summary of the last epoch, the per-fold values of the last epoch and the history.
        Every row also says how many repeats it was measured on (``cv_repeats_done``), whether
        that is the whole protocol (``full_protocol``, 1 or 0) and how many fold-epochs the
        trial has trained so far (``fold_epochs``).

    Raises:
        NonFiniteLossError: a fold's loss became NaN or infinite.
    """
    learner_cls = resolve_learner(model)
    if "epochs" in learner_cls.defaults:
        # Learners that schedule their learning rate over their epochs must know the real count.
        config = {
            **config,
            "epochs": trial_epochs(config, max_epochs, learner_cls.defaults["epochs"]),
        }
    folds = list(folds) if folds is not None else protocol.splits(data.labels)
    if len(folds) != protocol.folds * protocol.repeats:
        raise ValueError(f"{len(folds)} folds given for a {protocol.folds}x{protocol.repeats} CV")
    learners: list[Any] = []
    validation: list[tuple[Any, np.ndarray, Any]] = []

    def add_fold(i: int) -> None:
        fold = folds[i]
        learner = learner_cls(
            config,
            n_features=data.n_features,
            n_labels=data.n_labels,
            seed=protocol.seed * 1000 + i,
            device=device,
        )
        train = data.subset(fold.train)
        learner.setup(
            train.bags, protocol.training_labels(train.labels, i, learner_cls.partial_labels)
        )
        held = data.subset(fold.validation)
        validation.append((learner.encode(held.bags), held.labels, held.instance_labels))
        learners.append(learner)

    def train(i: int, epoch: int) -> float:
        try:
            loss = learners[i].train_epoch()
        except FloatingPointError as exc:
            raise NonFiniteLossError(
                f"fold {folds[i].key}, epoch {epoch}: {exc}; config {dict(config)}"
            ) from None
        if not math.isfinite(loss):
            raise NonFiniteLossError(
                f"fold {folds[i].key}, epoch {epoch}: training loss is {loss}; "
                f"config {dict(config)}"
            )
        return loss

    def evaluate(i: int) -> dict[str, float]:
        encoded, labels, instance_labels = validation[i]
        scores = learners[i].predict(encoded)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            values = compute(labels, scores, names=bag_metrics)
            if instance_metrics:
                values |= _instance_values(learners[i], encoded, instance_labels, instance_metrics)
        return values

    add_fold(0)
    epochs = trial_epochs(config, max_epochs, learners[0].epochs)
    bag_metrics = [m for m in metrics if m not in INSTANCE_METRICS]
    instance_metrics = [m for m in metrics if m in INSTANCE_METRICS]
    milestones = set(schedule.milestones) if schedule is not None else set()

    history: list[dict[str, Any]] = []
    per_fold: dict[str, list[float]] = {}
    losses: list[float] = []
    fold_epochs = 0

    def grow(active: int, through: int) -> None:
        """Adds folds up to ``active``, each trained through epoch ``through`` (catch-up)."""
        nonlocal fold_epochs
        while len(learners) < active:
            add_fold(len(learners))
            for past in range(1, through + 1):
                loss = train(len(learners) - 1, past)
                fold_epochs += 1
            if through == epoch:  # trained this epoch's step too: validated with the others
                losses.append(loss)
                for name, value in evaluate(len(learners) - 1).items():
                    if name in per_fold:
                        per_fold[name].append(value)

    def row() -> dict[str, Any]:
        out: dict[str, Any] = {
            "epoch": epoch,
            "target_epochs": epochs,
            **summarise(per_fold, losses),
        }
        out["cv_repeats_done"] = len(learners) // protocol.folds
        out["full_protocol"] = float(len(learners) == len(folds))
        out["fold_epochs"] = fold_epochs
        out["epoch_seconds"] = time.perf_counter() - started
        if objective is not None:
            out[FOLD_VALUES] = list(per_fold.get(objective, []))
        return out

    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        repeats = schedule.at(epoch) if schedule is not None else protocol.repeats
        grow(min(len(folds), repeats * protocol.folds), epoch - 1)
        losses = []
        per_fold = {name: [] for name in metrics}
        for i in range(len(learners)):
            losses.append(train(i, epoch))
            fold_epochs += 1
            values = evaluate(i)
            for name in metrics:
                per_fold[name].append(values[name])
        if epoch == epochs and len(learners) < len(folds):
            if epoch in milestones and report is not None:
                # The rung compares this trial on the same folds as the others first.
                report(row())
            grow(len(folds), epoch)  # a completed trial is judged under the full protocol
        history.append(row())
        if report is not None:
            report(dict(history[-1], per_fold=per_fold) if epoch == epochs else history[-1])
    return CVResult(epochs=epochs, summary=history[-1], per_fold=per_fold, history=history)


def _instance_values(
    learner: Any, encoded: Any, labels: Sequence[np.ndarray] | None, names: list[str]
) -> dict[str, float]:
    """Instance-level metrics, or NaN for a learner that does not predict instances."""
    predicted = learner.predict_instances(encoded)
    if predicted is None or labels is None:
        return dict.fromkeys(names, math.nan)
    return compute_instances(labels, predicted, names=names)


def summarise(per_fold: Mapping[str, Sequence[float]], losses: Sequence[float]) -> dict[str, float]:
    """Fold mean (under the metric's own name) and fold std (``<name>_std``) of every metric."""
    out: dict[str, float] = {}
    for name, values in per_fold.items():
        arr = np.asarray(values, dtype=float)
        finite = arr[np.isfinite(arr)]
        out[name] = float(finite.mean()) if finite.size else float("nan")
        out[f"{name}_std"] = float(finite.std()) if finite.size else float("nan")
    out["train_loss"] = float(np.mean(losses))
    out["train_loss_std"] = float(np.std(losses))
    return out


def tune_trainable(
    config: dict[str, Any],
    *,
    data: MIMLDataset,
    model: str,
    protocol: CVProtocol,
    max_epochs: int,
    metrics: Sequence[str] = ALL_METRICS,
    schedule: RepeatsSchedule | None = None,
    folds: Sequence[Fold] | None = None,
    objective: str | None = None,
) -> None:
    """The Ray Tune function trainable: :func:`run_cv` reporting every epoch to Tune."""
    from ray import tune

    resources = tune.get_context().get_trial_resources()
    required = resources.required_resources if resources is not None else {}
    torch.set_num_threads(max(1, int(required.get("CPU", 1))))
    device = _trial_device(float(required.get("GPU", 0)))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def report(row: dict[str, Any]) -> None:
        extra: dict[str, Any] = {"device": _device_name(device)}
        if device.type == "cuda":
            extra["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        tune.report({**row, **extra})

    try:
        run_cv(
            model,
            config,
            data,
            protocol,
            max_epochs=max_epochs,
            metrics=metrics,
            device=device,
            report=report,
            schedule=schedule,
            folds=folds,
            objective=objective,
        )
    finally:
        # Tune reuses this worker for the next trial: hand the fold models' memory back to the
        # system instead of keeping the largest trial's peak for the rest of the search.
        release_memory()


def search_trainable(
    config: dict[str, Any],
    *,
    data: MIMLDataset,
    model: str,
    protocol: CVProtocol,
    max_epochs: int,
    metrics: Sequence[str],
    metric: str,
    schedule: RepeatsSchedule | None = None,
    folds: Sequence[Fold] | None = None,
) -> None:
    """A search's Tune function: :func:`tune_trainable`, with an error raised by the trial itself
    (a diverging loss, a bad configuration) announced to the driver before it is raised, so that
    the driver does not retry it: only a trial whose worker process died is retried (Tune's
    ``max_failures`` counts both kinds alike).

    It lives here, not in :mod:`tuner.search`, because a trial worker imports the module of the
    function it runs: this one needs torch and the learners, not the driver's Ray Tune searcher,
    Optuna or MLflow (seconds off every worker's start)."""
    from ray import tune

    from tuner.tracking import APPLICATION_ERROR

    try:
        tune_trainable(
            config, data=data, model=model, protocol=protocol, max_epochs=max_epochs,
            metrics=metrics, schedule=schedule, folds=folds, objective=metric,
        )  # fmt: skip
    except Exception as exc:
        # Tune checks that every result carries the searched metric: NaN, which the scheduler,
        # the searcher and the MLflow callback all skip.
        message = f"{type(exc).__name__}: {exc}".splitlines()[0][:2000]
        tune.report({metric: math.nan, APPLICATION_ERROR: message})
        raise


def release_memory() -> None:
    """Frees what Python and the C allocator hold unused: a garbage collection, then glibc's
    ``malloc_trim`` (where the C library has it), which returns freed heap pages to the system."""
    import ctypes
    import ctypes.util
    import gc

    gc.collect()
    name = ctypes.util.find_library("c")
    if name is None:
        return
    try:
        ctypes.CDLL(name).malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return


def _device_name(device: torch.device) -> str:
    """``cpu``, or ``cuda:I (NAME)`` with the GPU's index as this process sees it."""
    if device.type != "cuda":
        return str(device)
    index = device.index if device.index is not None else torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def _trial_device(gpus: float) -> torch.device:
    if gpus <= 0:
        return torch.device("cpu")
    if torch.cuda.is_available():
        # Ray sets CUDA_VISIBLE_DEVICES to the GPU it assigned: it is device 0 here.
        return torch.device("cuda", 0)
    warnings.warn(
        f"the trial was given {gpus:g} GPU by Ray but torch sees no CUDA device "
        f"(torch {torch.__version__}, CUDA_VISIBLE_DEVICES="
        f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')}); training on CPU",
        RuntimeWarning,
        stacklevel=2,
    )
    return torch.device("cpu")
