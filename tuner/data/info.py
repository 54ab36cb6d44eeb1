"""A dataset's summary, as data (for JSON and MLflow) and as text (for ``miml-tune data info``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from tuner.data.dataset import MIMLDataset
from tuner.errors import MimlTuneError

__all__ = ["describe", "format_description"]

_KEYS = (
    "name",
    "source",
    "fingerprint",
    "n_bags",
    "n_instances",
    "instances_per_bag",
    "n_features",
    "n_labels",
    "labels",
    "label_cardinality",
    "label_density",
    "bags_without_labels",
)


def describe(ds: MIMLDataset) -> dict[str, Any]:
    """Summarises a dataset; every value is a plain ``str``, ``int``, ``float``, list or dict.

    Args:
        ds: the dataset.

    Returns:
        A JSON-serialisable dict with the keys ``name``, ``source``, ``fingerprint``,
        ``n_bags``, ``n_instances``, ``instances_per_bag`` (``min``, ``median``, ``max``,
        ``mean``), ``n_features``, ``n_labels``, ``labels`` (one ``{"name", "positives",
        "frequency"}`` per label, in column order), ``label_cardinality`` (mean number of
        labels per bag), ``label_density`` (cardinality / ``n_labels``) and
        ``bags_without_labels``.
    """
    counts = ds.instance_counts
    positives = ds.labels.sum(axis=0, dtype=np.int64)
    per_bag = ds.labels.sum(axis=1, dtype=np.int64)
    cardinality = float(per_bag.mean())
    return {
        "name": ds.name,
        "source": ds.source,
        "fingerprint": ds.fingerprint(),
        "n_bags": ds.n_bags,
        "n_instances": int(counts.sum()),
        "instances_per_bag": {
            "min": int(counts.min()),
            "median": float(np.median(counts)),
            "max": int(counts.max()),
            "mean": float(counts.mean()),
        },
        "n_features": ds.n_features,
        "n_labels": ds.n_labels,
        "labels": [
            {"name": name, "positives": int(p), "frequency": float(p) / ds.n_bags}
            for name, p in zip(ds.label_names, positives, strict=True)
        ],
        "label_cardinality": cardinality,
        "label_density": cardinality / ds.n_labels,
        "bags_without_labels": int((per_bag == 0).sum()),
    }


def _number(x: float) -> str:
    return f"{x:g}" if float(x).is_integer() else f"{x:.1f}"


def format_description(info: dict[str, Any]) -> str:
    """Renders :func:`describe`'s dict as aligned, human-readable lines.

    Args:
        info: the dict :func:`describe` returned (possibly read back from JSON).

    Returns:
        Multi-line text without a trailing newline.

    Raises:
        MimlTuneError: ``info`` lacks keys that :func:`describe` writes.
    """
    missing = [k for k in _KEYS if k not in info]
    if missing:
        raise MimlTuneError(
            f"format_description() needs the dict that describe() returns; missing key(s) "
            f"{', '.join(map(repr, missing))}"
        )
    per_bag = info["instances_per_bag"]
    lines = [
        f"dataset      {info['name']}",
        f"source       {info['source']}",
        f"fingerprint  {info['fingerprint']}",
        f"bags         {info['n_bags']}",
        f"instances    {info['n_instances']} (per bag: min {per_bag['min']}, median "
        f"{_number(per_bag['median'])}, max {per_bag['max']}, mean {per_bag['mean']:.2f})",
        f"features     {info['n_features']}",
        f"labels       {info['n_labels']} (cardinality {info['label_cardinality']:.3f} labels "
        f"per bag, density {info['label_density']:.4f}, {info['bags_without_labels']} bags "
        "without labels)",
    ]
    width = max((len(str(label["name"])) for label in info["labels"]), default=0)
    digits = len(str(info["n_bags"]))
    for label in info["labels"]:
        lines.append(
            f"  {label['name']:<{width}}  {label['positives']:>{digits}} bags  "
            f"{100 * label['frequency']:5.1f}%"
        )
    return "\n".join(lines)
