"""The search's data: the dataset loaded and split once in the driver (the holdout never reaches
a trial), the metrics a search reports, the peers scored on the search's folds."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from tuner.cv import holdout_split
from tuner.data import MIMLDataset, load_dataset
from tuner.errors import MimlTuneError
from tuner.metrics import ALL_METRICS, INSTANCE_METRICS
from tuner.spec import SearchSpec

if TYPE_CHECKING:
    from tuner.trial import CVProtocol


def prepare_data(
    spec: SearchSpec,
    data: str | None,
    *,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> tuple[MIMLDataset, MIMLDataset, MIMLDataset | None]:
    """Loads the space's dataset and splits it: ``(full, development, holdout)``.

    Data with an official test split (a Mulan ``NAME-train.arff`` / ``NAME-test.arff`` pair)
    keeps it as the holdout; other data holds out a stratified ``spec.holdout`` fraction
    (``None`` when that fraction is 0).
    """
    full = load_data(spec, data, bag_key=bag_key, label_key=label_key)
    return (full, *split_data(spec, full))


def load_data(
    spec: SearchSpec,
    data: str | None,
    *,
    bag_key: str | None = None,
    label_key: str | None = None,
) -> MIMLDataset:
    """The space's dataset (or the file ``data``), read and checked as a dataset: the part of
    :func:`prepare_data` that needs no model library, so a bad file fails within a second."""
    keys = {k: v for k, v in (("bag_key", bag_key), ("label_key", label_key)) if v is not None}
    return load_dataset(spec.dataset, data=data, **keys)


def split_data(spec: SearchSpec, full: MIMLDataset) -> tuple[MIMLDataset, MIMLDataset | None]:
    """Checks that the space's models can run on ``full`` and splits it into development and
    holdout parts (see :func:`prepare_data`)."""
    check_model_fits(spec, full)
    if full.has_test_split and full.test_mask is not None:
        dev_idx, hold_idx = np.flatnonzero(~full.test_mask), np.flatnonzero(full.test_mask)
    else:
        dev_idx, hold_idx = holdout_split(full.labels, spec.holdout, spec.holdout_seed)
    if len(dev_idx) < spec.cv_folds * 2:
        raise MimlTuneError(
            f"dataset {full.name!r} has {len(dev_idx)} development bags, too few for "
            f"{spec.cv_folds}-fold CV"
        )
    return full.subset(dev_idx), full.subset(hold_idx) if len(hold_idx) else None


def check_model_fits(spec: SearchSpec, data: MIMLDataset) -> None:
    """Refuses a model (or a metric) that cannot run on this kind of data, before any work."""
    from tuner.learners import Learner, learner_names, resolve_learner
    from tuner.metrics import INSTANCE_METRICS

    for model in (spec.model, *spec.peers):
        if data.is_vector and not resolve_learner(model).vector_data:
            usable = [n for n in learner_names() if resolve_learner(n).vector_data]
            fix = (
                f"run one of {', '.join(usable)} (--model)"
                if model == spec.model
                else "remove it from the space's peers"
            )
            raise MimlTuneError(
                f"model {model!r} needs bags of several instances, but dataset {data.name!r} is "
                f"vector data (one instance per example); {fix}"
            )
    if spec.metric in INSTANCE_METRICS:
        if data.instance_labels is None:
            raise MimlTuneError(
                f"metric {spec.metric!r} needs instance labels, which dataset {data.name!r} "
                "does not have; choose a bag-level metric"
            )
        if resolve_learner(spec.model).predict_instances is Learner.predict_instances:
            raise MimlTuneError(
                f"metric {spec.metric!r} scores instance predictions, which model "
                f"{spec.model!r} does not make; choose a bag-level metric or gamil_c"
            )


def search_metrics(dev: MIMLDataset) -> tuple[str, ...]:
    """Every metric a search reports: bag-level and multi-label ones, and instance-level ones
    when the data labels its instances."""
    return (*ALL_METRICS, *(INSTANCE_METRICS if dev.instance_labels is not None else ()))


def run_peers(
    spec: SearchSpec,
    dev: MIMLDataset,
    protocol: CVProtocol,
    metrics: tuple[str, ...],
    *,
    threads: float,
) -> dict[str, dict[str, Any]]:
    """Every peer's CV on the search's folds, in the driver, on a trial's share of threads
    (more intra-op threads than cores made the small peers up to ten times slower): its
    summary, with its values on each fold under ``per_fold`` for paired tests."""
    import torch

    from tuner.trial import run_cv

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        results = {m: run_cv(m, {}, dev, protocol, metrics=metrics) for m in spec.peers}
        return {m: {**r.summary, "per_fold": r.per_fold} for m, r in results.items()}
    finally:
        torch.set_num_threads(before)


class Background:
    """Runs ``fn`` in a thread of the driver: the search does not wait for work it needs only
    later (the peers' CV while the trials train, the data while Ray starts). :meth:`result`
    waits for it and raises what it raised."""

    def __init__(self, fn: Callable[[], Any], name: str) -> None:
        self._value: Any = None
        self._error: BaseException | None = None

        def run() -> None:
            try:
                self._value = fn()
            except BaseException as exc:  # handed to the thread that waits for the result
                self._error = exc

        self._thread = threading.Thread(target=run, name=f"miml-tune-{name}", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value
