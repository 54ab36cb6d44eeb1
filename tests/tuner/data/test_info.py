"""describe() and format_description(): checked against a slow reference and the real Birds."""

from __future__ import annotations

import json
import statistics

import numpy as np
import pytest

from tuner.data import MIMLDataset, describe, format_description, load_dataset
from tuner.errors import MimlTuneError


def make_dataset(sizes: list[int], labels: list[list[int]]) -> MIMLDataset:
    rng = np.random.default_rng(0)
    return MIMLDataset(
        name="toy",
        bags=tuple(rng.normal(size=(n, 4)).astype(np.float32) for n in sizes),
        labels=np.asarray(labels, dtype=np.uint8),
        bag_ids=tuple(f"b{i}" for i in range(len(sizes))),
        label_names=("a", "b", "c"),
        feature_names=("f0", "f1", "f2", "f3"),
        source="memory",
    )


def test_describe_matches_a_slow_reference() -> None:
    sizes = [1, 4, 2, 7]
    labels = [[1, 0, 0], [1, 1, 0], [0, 0, 0], [1, 0, 0]]
    info = describe(make_dataset(sizes, labels))
    assert info["n_bags"] == 4 and info["n_instances"] == sum(sizes)
    assert info["instances_per_bag"] == {
        "min": 1,
        "median": statistics.median(sizes),
        "max": 7,
        "mean": statistics.mean(sizes),
    }
    assert [(x["name"], x["positives"], x["frequency"]) for x in info["labels"]] == [
        ("a", 3, 0.75),
        ("b", 1, 0.25),
        ("c", 0, 0.0),
    ]
    per_bag = [sum(row) for row in labels]
    assert info["label_cardinality"] == pytest.approx(statistics.mean(per_bag))
    assert info["label_density"] == pytest.approx(statistics.mean(per_bag) / 3)
    assert info["bags_without_labels"] == 1
    assert json.loads(json.dumps(info)) == info


def test_describe_birds() -> None:
    ds = load_dataset("birds")
    info = describe(ds)
    assert info["name"] == "birds"
    assert info["fingerprint"] == ds.fingerprint()
    assert (info["n_bags"], info["n_instances"]) == (257, 2062)
    assert info["instances_per_bag"]["min"] == 2
    assert info["instances_per_bag"]["max"] == 36
    assert info["instances_per_bag"]["median"] == 6.0
    assert info["instances_per_bag"]["mean"] == pytest.approx(2062 / 257)
    assert (info["n_features"], info["n_labels"]) == (38, 19)
    positives = {x["name"]: x["positives"] for x in info["labels"]}
    assert (positives["SWTH"], positives["PAWR"], positives["RBNU"]) == (83, 70, 2)
    assert sum(positives.values()) == 531
    assert info["label_cardinality"] == pytest.approx(531 / 257)
    assert info["label_density"] == pytest.approx(531 / 257 / 19)
    assert info["bags_without_labels"] == 0
    json.dumps(info)


def test_format_description_birds() -> None:
    text = format_description(describe(load_dataset("birds")))
    assert "dataset      birds" in text
    assert "bags         257" in text
    assert "instances    2062 (per bag: min 2, median 6, max 36, mean 8.02)" in text
    assert "features     38" in text
    assert "labels       19 (cardinality 2.066 labels per bag, density 0.1087" in text
    assert "  SWTH   83 bags   32.3%" in text
    assert len(text.splitlines()) == 7 + 19


def test_format_description_after_json_round_trip() -> None:
    info = describe(make_dataset([1, 2], [[1, 0, 0], [0, 1, 1]]))
    text = format_description(json.loads(json.dumps(info)))
    assert "median 1.5" in text


def test_format_description_rejects_other_dicts() -> None:
    with pytest.raises(MimlTuneError, match=r"missing key.*'fingerprint'"):
        format_description({"name": "x", "source": "y"})
