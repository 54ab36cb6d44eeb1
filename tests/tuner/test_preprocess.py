"""InstanceStandardizer: statistics over all training instances, constant features, round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tuner.data.preprocess import InstanceStandardizer
from tuner.errors import MimlTuneError


def _bags(seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    bags = []
    for _ in range(12):
        bag = rng.normal(loc=[5.0, -2.0, 0.0], scale=[3.0, 0.1, 1.0], size=(rng.integers(1, 8), 3))
        bag[:, 2] = 4.0  # a constant feature
        bags.append(bag.astype(np.float32))
    return bags


def test_statistics_are_over_all_instances() -> None:
    bags = _bags()
    scaler = InstanceStandardizer().fit(bags)
    stacked = np.concatenate(bags).astype(np.float64)
    np.testing.assert_allclose(scaler.mean_, stacked.mean(axis=0))
    np.testing.assert_allclose(scaler.std_[:2], stacked.std(axis=0)[:2])
    assert scaler.n_features == 3


def test_transformed_training_instances_are_standardised() -> None:
    bags = _bags()
    out = InstanceStandardizer().fit_transform(bags)
    assert [a.shape for a in out] == [b.shape for b in bags]
    assert all(a.dtype == np.float32 for a in out)
    stacked = np.concatenate(out)
    np.testing.assert_allclose(stacked[:, :2].mean(axis=0), 0.0, atol=1e-5)
    np.testing.assert_allclose(stacked[:, :2].std(axis=0), 1.0, atol=1e-5)


def test_constant_feature_gets_std_one() -> None:
    bags = _bags()
    scaler = InstanceStandardizer().fit(bags)
    assert scaler.std_[2] == 1.0
    assert np.all(np.concatenate(scaler.transform(bags))[:, 2] == 0.0)


def test_tiny_but_varying_feature_is_scaled() -> None:
    bags = [np.array([[1e-9], [3e-9]], dtype=np.float32)]
    out = InstanceStandardizer().fit_transform(bags)[0]
    np.testing.assert_allclose(out[:, 0], [-1.0, 1.0], rtol=1e-4)


def test_inputs_are_not_modified() -> None:
    bags = _bags()
    copies = [b.copy() for b in bags]
    InstanceStandardizer().fit_transform(bags)
    for a, b in zip(bags, copies, strict=True):
        np.testing.assert_array_equal(a, b)


def test_json_round_trip() -> None:
    bags = _bags()
    scaler = InstanceStandardizer().fit(bags)
    state = json.loads(json.dumps(scaler.to_dict()))
    restored = InstanceStandardizer.from_dict(state)
    new = _bags(seed=1)
    for a, b in zip(scaler.transform(new), restored.transform(new), strict=True):
        np.testing.assert_array_equal(a, b)
    assert repr(restored) == "InstanceStandardizer(n_features=3)"
    assert repr(InstanceStandardizer()) == "InstanceStandardizer(unfitted)"


def test_transform_before_fit_is_an_error() -> None:
    with pytest.raises(MimlTuneError, match="not fitted"):
        InstanceStandardizer().transform(_bags())
    with pytest.raises(MimlTuneError, match="not fitted"):
        InstanceStandardizer().to_dict()


def test_feature_dimension_must_match() -> None:
    scaler = InstanceStandardizer().fit(_bags())
    with pytest.raises(MimlTuneError, match="bag 0 has 2 features but the standardiser was fitted"):
        scaler.transform([np.zeros((2, 2), dtype=np.float32)])
    with pytest.raises(MimlTuneError, match="bag 1 has 2 features but bag 0 has 3"):
        InstanceStandardizer().fit([np.zeros((2, 3)), np.zeros((2, 2))])
    with pytest.raises(MimlTuneError, match="bag 0 must be a 2-D"):
        InstanceStandardizer().fit([np.zeros(3)])


@pytest.mark.parametrize(
    "bags", [[], [np.zeros((0, 3), dtype=np.float32)], [np.array([[np.nan, 1.0]])]]
)
def test_fit_needs_finite_instances(bags: list[np.ndarray]) -> None:
    with pytest.raises(MimlTuneError, match="cannot fit the standardiser"):
        InstanceStandardizer().fit(bags)


@pytest.mark.parametrize(
    ("state", "message"),
    [
        ({"mean": [0.0]}, "exactly the keys"),
        ([0.0, 1.0], "exactly the keys"),
        ({"mean": [0.0, 1.0], "std": [1.0]}, "equally long"),
        ({"mean": [], "std": []}, "equally long"),
        ({"mean": [0.0], "std": [0.0]}, "positive standard deviations"),
    ],
)
def test_from_dict_rejects_bad_states(state: object, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message):
        InstanceStandardizer.from_dict(state)  # type: ignore[arg-type]
