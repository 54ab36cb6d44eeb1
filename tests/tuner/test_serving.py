"""Saving a trained learner as a served model: every registered model predicts the same after a
save and reload, without its training data; the long form of bags round-trips."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from tests.learning import birds_split, single_thread
from tuner.errors import MimlTuneError
from tuner.learners import learner_names, resolve_learner
from tuner.serving import (
    bags_to_frame,
    frame_to_bags,
    label_sets,
    load_learner,
    predict_bags,
    save_learner,
)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    yield from single_thread()


# Learners that need training bags to predict (nearest neighbours by Hausdorff distance).
KEEPS_TRAINING_BAGS = {"miml_knn"}


@pytest.mark.parametrize("model", learner_names())
def test_a_saved_learner_predicts_the_same_without_its_training_data(
    model: str, tmp_path: Path
) -> None:
    split = birds_split()
    cls = resolve_learner(model)
    config = {"epochs": 2} if "epochs" in cls.defaults else {}
    if model == "mulsupcon" or model == "mulsupcon_ld":
        config |= {"pretrain_epochs": 1}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner = cls(config, n_features=split.n_features, n_labels=split.n_labels, seed=0)
        learner.setup(split.train_bags, split.train_labels)
        for _ in range(learner.epochs):
            learner.train_epoch()
        expected = predict_bags(learner, split.test_bags)
        save_learner(learner, tmp_path, {"model": model})
        loaded = load_learner(tmp_path)
        got = predict_bags(loaded, split.test_bags)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    assert loaded.device == torch.device("cpu")
    n_train = len(split.train_bags)
    if model not in KEEPS_TRAINING_BAGS:
        sized = [
            key
            for key, value in vars(loaded).items()
            if isinstance(value, (np.ndarray, torch.Tensor))
            and value.ndim
            and len(value) == n_train
        ]
        assert not sized, f"{model} saved training-sized state {sized}"


def test_long_form_round_trips_bags_in_order_of_first_appearance() -> None:
    rng = np.random.default_rng(0)
    bags = [rng.normal(size=(n, 3)).astype(np.float32) for n in (2, 1, 4)]
    frame = bags_to_frame(bags, ["b", "a", "c"])
    assert list(frame.columns) == ["bag_id", "f0", "f1", "f2"] and len(frame) == 7
    shuffled = frame.iloc[[6, 0, 2, 3, 1, 4, 5]]  # rows of one bag need not be together
    ids, back = frame_to_bags(shuffled, 3)
    assert ids == ["c", "b", "a"]
    np.testing.assert_array_equal(back[1], bags[0])
    np.testing.assert_array_equal(back[2], bags[1])
    np.testing.assert_array_equal(back[0], bags[2][[3, 0, 1, 2]])
    # float64 input, as pandas reads it, and integer bag ids are accepted.
    wide = frame.astype({"f0": "float64"}).assign(bag_id=[1, 1, 2, 3, 3, 3, 3])
    ids, _ = frame_to_bags(wide, 3)
    assert ids == ["1", "2", "3"]


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (pd.DataFrame({"f0": [1.0]}), "needs a 'bag_id' column"),
        (pd.DataFrame({"bag_id": ["a"], "f0": [1.0]}), "the model takes 2 instance features"),
        (pd.DataFrame({"bag_id": ["a"], "f0": [1.0], "f1": [np.nan]}), "non-finite"),
        (pd.DataFrame({"bag_id": ["a"], "f0": [1.0], "f1": ["x"]}), "must hold numbers"),
    ],
)
def test_bad_model_input_is_one_line(frame: pd.DataFrame, message: str) -> None:
    with pytest.raises(MimlTuneError, match=message) as info:
        frame_to_bags(frame, 2)
    assert "\n" not in str(info.value)


def test_label_sets_by_threshold_and_top_k() -> None:
    scores = np.array([[0.9, 0.6, 0.2], [0.4, 0.45, 0.1]])
    assert label_sets(scores).tolist() == [[1, 1, 0], [0, 0, 0]]
    assert label_sets(scores, threshold=0.3).tolist() == [[1, 1, 0], [1, 1, 0]]
    assert label_sets(scores, top_k=1).tolist() == [[1, 0, 0], [0, 1, 0]]
    assert label_sets(scores, threshold=0.5, top_k=1).tolist() == [[1, 0, 0], [0, 0, 0]]
    assert label_sets(scores, top_k=10).sum() == 6
