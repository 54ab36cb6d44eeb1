"""``miml-tune active query``: rank a pool of unlabelled bags for an expert to label next.

The pool is read in any format the project reads, with its labels absent or ignored: MIML ARFF
(labels ``?``, or 0/1 that are not used), a CSV in the model's input form (``bag_id``, ``f0``
...), a MATLAB ``.mat`` without a label matrix, or any other data file the loaders read. The
registered model scores every bag; a strategy of :mod:`tuner.active.strategies` picks the
``batch`` to label first. The ranking is written whole or not at all.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuner.active.files import written_whole
from tuner.active.strategies import Pool, bag_vectors, query, resolve_strategy
from tuner.errors import MimlTuneError


def read_pool(
    path: str, n_features: int, *, bag_key: str | None = None
) -> tuple[list[str], list[np.ndarray]]:
    """The bag ids and bags of the pool file ``path`` (labels, if any, are not read or used).

    Raises:
        MimlTuneError: a missing or unreadable file, or bags with another feature count.
    """
    from tuner.data import detect_format, load_dataset
    from tuner.data.arff import read_miml_arff
    from tuner.data.matlab import read_mat_bags
    from tuner.serving import _read_csv, frame_to_bags

    suffix = Path(path).suffix.lower()
    if not Path(path).is_file():
        raise MimlTuneError(f"pool file {path} does not exist; give the bags to rank with --pool")
    if bag_key is not None and detect_format(path) != "mat":
        raise MimlTuneError(f"--bag-key names a variable of a .mat file; {path} is not one")
    if suffix == ".csv":
        frame = _read_csv(path)
        found = sum(1 for c in frame.columns if c != "bag_id")
        if found != n_features:
            raise _features_error(path, found, n_features)
        ids, bags = frame_to_bags(frame, n_features)
    elif detect_format(path) == "mat":
        mat_ids, mat_bags = read_mat_bags(path, bag_key=bag_key)
        ids, bags = list(mat_ids), list(mat_bags)
    elif detect_format(path) == "miml_arff":
        pool = read_miml_arff(path, unlabelled=True)
        ids, bags = list(pool.bag_ids), list(pool.bags)
    else:
        dataset = load_dataset(path)
        ids, bags = list(dataset.bag_ids), list(dataset.bags)
    if not bags:
        raise MimlTuneError(f"pool {path} has no bags; give a file with the bags to rank")
    width = {int(b.shape[1]) for b in bags}
    if width != {n_features}:
        raise _features_error(path, min(width - {n_features}), n_features)
    return ids, bags


def _features_error(path: str, found: int, wanted: int) -> MimlTuneError:
    return MimlTuneError(
        f"pool {path} has {found} features per instance, the model takes {wanted}; give a pool "
        "with the features the model was trained on"
    )


def rank_pool(
    model_uri: str,
    pool_path: str,
    *,
    batch: int,
    strategy: str = "uncertainty",
    seed: int = 0,
    out: str | None = None,
    tracking_uri: str | None = None,
    bag_key: str | None = None,
    trust_pickled_model: bool = False,
) -> dict[str, Any]:
    """Scores the pool with the model at ``model_uri`` and picks the ``batch`` bags to label
    next by ``strategy`` (deterministic for a ``seed``); writes them to ``out`` (CSV: ``rank``,
    ``bag_id``, ``utility``, then ``score.<label>`` for every label) and returns a summary.

    The cardinality strategies read the training data's labels per bag from the model (a
    model promoted before it recorded that uses the mean count it predicts on the pool, and the
    summary's ``label_cardinality_from`` says which was used).

    Raises:
        MimlTuneError: an unknown strategy, a batch below 1 or larger than the pool, a pool that
            does not fit the model, or a model that cannot be loaded (one line each).
    """
    from tuner import tracking
    from tuner.serving import bags_to_frame, load_model

    resolve_strategy(strategy)  # an unknown strategy or batch fails before anything is loaded
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise MimlTuneError(f"--batch must be a whole number >= 1, got {batch!r}")
    if out is not None and Path(out).suffix.lower() != ".csv":
        raise MimlTuneError(f"--out {out}: the ranking is written as CSV; name a .csv file")
    uri = tracking.resolve_tracking_uri(tracking_uri)
    tracking.check_tracking_uri(uri, existing=True)
    model = load_model(model_uri, uri, trust_pickled=trust_pickled_model)
    meta = model.metadata.metadata["miml_tune"]
    ids, bags = read_pool(pool_path, int(meta["n_features"]), bag_key=bag_key)
    if len(set(ids)) != len(ids):
        raise MimlTuneError(f"pool {pool_path} repeats bag ids; every bag needs its own id")
    labels = list(meta["label_names"])
    scores = model.predict(bags_to_frame(bags, ids))[labels].to_numpy(dtype=np.float64)
    instances = np.concatenate(bags).astype(np.float64)
    predicted = float((scores >= 0.5).sum(axis=1).mean())
    cardinality = float(meta.get("label_cardinality", predicted))
    cardinality_from = "the model" if "label_cardinality" in meta else "the pool's predictions"
    vectors = bag_vectors(bags, instances.mean(axis=0), instances.std(axis=0))
    pool = Pool(scores, vectors, cardinality)
    chosen, utilities = query(strategy, pool, batch, seed)
    rows = [
        {
            "rank": rank,
            "bag_id": ids[i],
            "utility": float(u),
            "scores": {label: float(s) for label, s in zip(labels, scores[i], strict=True)},
        }
        for rank, (i, u) in enumerate(zip(chosen, utilities, strict=True), start=1)
    ]
    if out is not None:
        _write_ranking(Path(out).expanduser(), rows, labels)
    return {
        "model_uri": model_uri,
        "model": meta["model"],
        "pool": str(pool_path),
        "pool_bags": len(ids),
        "strategy": strategy,
        "batch": len(rows),
        "seed": seed,
        "label_cardinality": cardinality,
        "label_cardinality_from": cardinality_from,
        "out": str(out) if out else None,
        "rows": rows,
    }


def _write_ranking(path: Path, rows: Sequence[dict[str, Any]], labels: Sequence[str]) -> None:
    """The ranking as CSV, through a temporary file renamed into place."""
    if not path.parent.is_dir():
        raise MimlTuneError(f"--out {path}: folder {path.parent} does not exist")
    with written_whole(path) as handle:
        writer = csv.writer(handle)
        writer.writerow(["rank", "bag_id", "utility", *(f"score.{label}" for label in labels)])
        for row in rows:
            writer.writerow(
                [row["rank"], row["bag_id"], f"{row['utility']:.6g}",
                 *(f"{row['scores'][label]:.6f}" for label in labels)]
            )  # fmt: skip
