"""The in-memory MIML dataset every loader returns and every learner consumes."""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tuner.errors import MimlTuneError

_FINGERPRINT_VERSION = b"miml-tune/dataset/v1"


class DataWarning(UserWarning):
    """Data that is suspicious but usable, e.g. a label that no bag carries."""


def warn_constant_labels(
    where: object, labels: np.ndarray, names: Sequence[str], *, unit: str = "bag"
) -> None:
    """Warns (:class:`DataWarning`) about labels that no ``unit`` carries or that all carry."""
    positives = labels.sum(axis=0)
    never = [n for n, p in zip(names, positives, strict=True) if p == 0]
    always = [n for n, p in zip(names, positives, strict=True) if p == len(labels)]
    if not never and not always:
        return

    def shown(found: list[str], limit: int = 8) -> str:
        text = ", ".join(repr(n) for n in found[:limit])
        return text + (f", ... ({len(found)} in all)" if len(found) > limit else "")

    parts = []
    if never:
        parts.append(f"never positive: {shown(never)}")
    if always:
        parts.append(f"positive in every {unit}: {shown(always)}")
    warnings.warn(
        f"{where}: label {'; '.join(parts)}; such labels cannot be learnt or evaluated "
        "(AUC is undefined for them)",
        DataWarning,
        stacklevel=3,
    )


@dataclass(frozen=True, eq=False, repr=False)
class MIMLDataset:
    """A multi-instance multi-label dataset: bags of instances, each bag with a label set.

    The arrays are shared, not copied, by :meth:`subset`; treat them as read-only.

    Args:
        name: short name, e.g. ``"birds"``.
        bags: one array per bag, each ``(n_instances_i, n_features)`` float32, C-contiguous,
            with at least one instance.
        labels: ``(n_bags, n_labels)`` uint8 array of 0/1.
        bag_ids: one identifier per bag, as written in the source file.
        label_names: ``n_labels`` names, in the order of the columns of ``labels``.
        feature_names: ``n_features`` names, in the order of the columns of each bag.
        source: the path the data was read from.
        test_mask: ``(n_bags,)`` bool array marking the bags of an official test split (a Mulan
            ``NAME-test.arff``), or ``None`` when the data has none; such bags are the holdout.
        instance_labels: one ``(n_instances_i, n_labels)`` uint8 0/1 array per bag for data that
            labels its instances, else ``None``.

    Raises:
        MimlTuneError: the pieces do not fit together (shapes, dtypes, counts).
    """

    name: str
    bags: tuple[np.ndarray, ...]
    labels: np.ndarray
    bag_ids: tuple[str, ...]
    label_names: tuple[str, ...]
    feature_names: tuple[str, ...]
    source: str
    test_mask: np.ndarray | None = None
    instance_labels: tuple[np.ndarray, ...] | None = None

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        if not isinstance(self.bags, tuple) or not self.bags:
            raise MimlTuneError(f"{where}: bags must be a non-empty tuple of arrays")
        n_features = len(self.feature_names)
        for i, bag in enumerate(self.bags):
            if (
                not isinstance(bag, np.ndarray)
                or bag.dtype != np.float32
                or bag.ndim != 2
                or not bag.flags.c_contiguous
            ):
                raise MimlTuneError(
                    f"{where}: bag {i} must be a C-contiguous 2-D float32 array, got "
                    f"{type(bag).__name__} {getattr(bag, 'dtype', '')} "
                    f"shape {getattr(bag, 'shape', '?')}"
                )
            if bag.shape[0] == 0 or bag.shape[1] != n_features:
                raise MimlTuneError(
                    f"{where}: bag {i} has shape {bag.shape}; expected (n_instances >= 1, "
                    f"{n_features}) to match the {n_features} feature names"
                )
        shape = (len(self.bags), len(self.label_names))
        if (
            not isinstance(self.labels, np.ndarray)
            or self.labels.dtype != np.uint8
            or self.labels.shape != shape
        ):
            raise MimlTuneError(
                f"{where}: labels must be a uint8 array of shape {shape} (bags x label names), "
                f"got {getattr(self.labels, 'dtype', type(self.labels).__name__)} "
                f"shape {getattr(self.labels, 'shape', '?')}"
            )
        if self.labels.size and int(self.labels.max()) > 1:
            raise MimlTuneError(f"{where}: labels must be 0 or 1, found {int(self.labels.max())}")
        if len(self.bag_ids) != len(self.bags):
            raise MimlTuneError(
                f"{where}: {len(self.bag_ids)} bag ids for {len(self.bags)} bags; need one each"
            )
        if self.test_mask is not None and (
            not isinstance(self.test_mask, np.ndarray)
            or self.test_mask.dtype != np.bool_
            or self.test_mask.shape != (len(self.bags),)
        ):
            raise MimlTuneError(
                f"{where}: test_mask must be a bool array of shape ({len(self.bags)},), got "
                f"{getattr(self.test_mask, 'dtype', type(self.test_mask).__name__)} "
                f"shape {getattr(self.test_mask, 'shape', '?')}"
            )
        if self.instance_labels is not None:
            if len(self.instance_labels) != len(self.bags):
                raise MimlTuneError(
                    f"{where}: {len(self.instance_labels)} instance label arrays for "
                    f"{len(self.bags)} bags; need one each"
                )
            for i, (bag, lab) in enumerate(zip(self.bags, self.instance_labels, strict=True)):
                if (
                    not isinstance(lab, np.ndarray)
                    or lab.dtype != np.uint8
                    or lab.shape != (bag.shape[0], shape[1])
                    or (lab.size and int(lab.max()) > 1)
                ):
                    raise MimlTuneError(
                        f"{where}: instance labels of bag {i} must be a 0/1 uint8 array of "
                        f"shape ({bag.shape[0]}, {shape[1]}), got "
                        f"{getattr(lab, 'dtype', type(lab).__name__)} "
                        f"shape {getattr(lab, 'shape', '?')}"
                    )

    @property
    def n_bags(self) -> int:
        """Number of bags."""
        return len(self.bags)

    @property
    def n_labels(self) -> int:
        """Number of labels (columns of :attr:`labels`)."""
        return len(self.label_names)

    @property
    def n_features(self) -> int:
        """Instance feature dimension."""
        return len(self.feature_names)

    @property
    def instance_counts(self) -> np.ndarray:
        """``(n_bags,)`` int64 array: the number of instances in each bag."""
        return np.fromiter((b.shape[0] for b in self.bags), dtype=np.int64, count=self.n_bags)

    @property
    def is_vector(self) -> bool:
        """True when every bag holds exactly one instance: ordinary multi-label vector data."""
        return all(b.shape[0] == 1 for b in self.bags)

    @property
    def has_test_split(self) -> bool:
        """True when the data carries an official test split (see :attr:`test_mask`)."""
        return self.test_mask is not None and bool(self.test_mask.any())

    @property
    def n_instances(self) -> int:
        """Total number of instances over all bags."""
        return int(self.instance_counts.sum())

    def subset(self, indices: Sequence[int] | np.ndarray) -> MIMLDataset:
        """The bags at ``indices``, in that order (repeats allowed), sharing the arrays.

        Args:
            indices: non-negative integer positions in ``range(n_bags)``; at least one.

        Returns:
            A dataset with the same name, source, label and feature names.

        Raises:
            MimlTuneError: empty, non-integer (a boolean mask included), negative or out of range.
        """
        idx = np.asarray(indices)
        if idx.dtype == np.bool_ or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise MimlTuneError(
                f"dataset {self.name!r}: subset() takes integer bag positions, got dtype "
                f"{idx.dtype}; for a boolean mask pass np.flatnonzero(mask)"
            )
        if idx.ndim != 1 or idx.size == 0:
            raise MimlTuneError(
                f"dataset {self.name!r}: subset() needs a non-empty 1-D sequence of bag "
                f"positions, got shape {idx.shape}"
            )
        bad = idx[(idx < 0) | (idx >= self.n_bags)]
        if bad.size:
            raise MimlTuneError(
                f"dataset {self.name!r}: subset() index {int(bad[0])} is out of range; "
                f"allowed 0..{self.n_bags - 1} ({self.n_bags} bags)"
            )
        positions = idx.astype(np.intp).tolist()
        return MIMLDataset(
            name=self.name,
            bags=tuple(self.bags[i] for i in positions),
            labels=np.ascontiguousarray(self.labels[idx]),
            bag_ids=tuple(self.bag_ids[i] for i in positions),
            label_names=self.label_names,
            feature_names=self.feature_names,
            source=self.source,
            test_mask=None if self.test_mask is None else self.test_mask[idx],
            instance_labels=(
                None
                if self.instance_labels is None
                else tuple(self.instance_labels[i] for i in positions)
            ),
        )

    def fingerprint(self) -> str:
        """A short content hash: equal data gives an equal fingerprint, wherever it was read.

        Covers the label names, the bag sizes, the feature values (float32 bytes) and the
        labels, in bag order, and the test split and instance labels where present; not the
        name, source, bag ids or feature names.

        Returns:
            The first 16 hex characters of a SHA-256 digest.
        """
        h = hashlib.sha256(_FINGERPRINT_VERSION)
        for label in self.label_names:
            encoded = label.encode("utf-8")
            h.update(len(encoded).to_bytes(8, "little"))
            h.update(encoded)
        h.update(self.n_features.to_bytes(8, "little"))
        h.update(self.instance_counts.astype("<i8").tobytes())
        for bag in self.bags:
            h.update(np.ascontiguousarray(bag, dtype="<f4").tobytes())
        h.update(np.ascontiguousarray(self.labels, dtype=np.uint8).tobytes())
        # Only data that has them hashes these, so older fingerprints stay valid.
        if self.test_mask is not None:
            h.update(b"test_mask")
            h.update(np.packbits(self.test_mask).tobytes())
        if self.instance_labels is not None:
            h.update(b"instance_labels")
            for lab in self.instance_labels:
                h.update(np.ascontiguousarray(lab, dtype=np.uint8).tobytes())
        return h.hexdigest()[:16]

    def __repr__(self) -> str:
        return (
            f"MIMLDataset(name={self.name!r}, n_bags={self.n_bags}, "
            f"n_instances={self.n_instances}, n_features={self.n_features}, "
            f"n_labels={self.n_labels}, source={self.source!r})"
        )
