"""A registered model is data (issue 12, item 15): it loads in a fresh process with every way to
unpickle forbidden, a model of miml-tune 0.1 (a pickle) is refused in one line unless the caller
passes --trust-pickled-model, a damaged saved learner is one line, and MIMLSVM's saved decision
function is scikit-learn's."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from tests.searches import cli, cli_env
from tuner.errors import MimlTuneError
from tuner.learners import resolve_learner
from tuner.serving import (
    ENTRY_FILE,
    LEARNER_FILE,
    LOADER_MODULE,
    META_FILE,
    bags_to_frame,
    load_learner,
    predict_bags,
    save_learner,
)

# Run first in the fresh process: every unpickler fails, and torch.load only reads weights.
NO_PICKLE = """
import pickle, sys
def _refused(*args, **kwargs):
    raise AssertionError("something was unpickled")
class _Refused:
    def __init__(self, *args, **kwargs):
        _refused()
pickle.load = pickle.loads = _refused
pickle.Unpickler = _Refused
import torch
_load = torch.load
def _weights_only(*args, **kwargs):
    if kwargs.get("weights_only") is False:
        _refused()
    return _load(*args, **kwargs)
torch.load = _weights_only
import cloudpickle
cloudpickle.load = cloudpickle.loads = _refused
"""


def _trained(model: str = "bag_mean_linear") -> tuple[Any, Any]:
    from tuner.data import load_dataset

    data = load_dataset("birds")
    cls = resolve_learner(model)
    config = {"epochs": 3} if "epochs" in cls.defaults else {}
    learner = cls(config, n_features=data.n_features, n_labels=data.n_labels, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        learner.setup(list(data.bags[:120]), data.labels[:120])
        for _ in range(learner.epochs):
            learner.train_epoch()
    return learner, data


def _meta(data: Any, model: str = "bag_mean_linear") -> dict[str, Any]:
    return {"model": model, "n_features": data.n_features, "label_names": list(data.label_names)}


def _log(uri: str, folder: Path, **how: Any) -> str:
    import mlflow

    mlflow.set_tracking_uri(uri)
    from tuner.serving import pip_requirements

    with mlflow.start_run():  # requirements given: MLflow would infer them in a subprocess
        info = mlflow.pyfunc.log_model(name="model", pip_requirements=pip_requirements(), **how)
    return str(info.model_uri)


def test_a_model_stored_as_data_loads_with_every_unpickler_forbidden_and_no_other_does(
    tmp_path: Path,
) -> None:
    learner, data = _trained()
    meta = _meta(data)
    save_learner(learner, tmp_path / "learner", meta)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_uri = _log(
        uri,
        tmp_path,
        loader_module=LOADER_MODULE,
        data_path=str(tmp_path / "learner"),
        metadata={"miml_tune": meta},
    )
    # Without miml-tune's metadata the same files are not loaded (nor any other pyfunc model).
    foreign = _log(uri, tmp_path, loader_module=LOADER_MODULE, data_path=str(tmp_path / "learner"))
    script = (
        NO_PICKLE
        + """
import json
from tuner.data import load_dataset
from tuner.errors import MimlTuneError
from tuner.serving import bags_to_frame, load_model
try:
    load_model(sys.argv[3], sys.argv[2])
except MimlTuneError as exc:
    assert "is not a miml-tune model" in str(exc), exc
else:
    raise AssertionError("a model without miml-tune's metadata was loaded")
model = load_model(sys.argv[1], sys.argv[2])
data = load_dataset("birds")
scores = model.predict(bags_to_frame(data.bags, data.bag_ids))
print(json.dumps(scores[list(data.label_names)].to_numpy().tolist()))
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, model_uri, uri, foreign],
        cwd=tmp_path, env=cli_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = np.asarray(json.loads(proc.stdout.strip().splitlines()[-1]))
    np.testing.assert_allclose(got, predict_bags(learner, list(data.bags)), atol=1e-6)
    # The files are JSON and a weights-only tensor file.
    document = json.loads((tmp_path / "learner" / LEARNER_FILE).read_text())
    assert document["learner"] == "bag_mean_linear" and document["format"] == 1
    assert "attributes" in document and "model" in document["attributes"]


def test_a_pickled_model_of_miml_tune_0_1_is_refused_unless_trusted(tmp_path: Path) -> None:
    learner, data = _trained()
    meta = _meta(data)
    old = tmp_path / "old"
    old.mkdir()
    clone = object.__new__(type(learner))  # what miml-tune 0.1 saved: the learner, pickled
    clone.__dict__.update({k: v for k, v in vars(learner).items() if k != "optimizer"})
    torch.save(clone, old / "learner.pt")
    (old / META_FILE).write_text(json.dumps(meta))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    model_uri = _log(
        uri,
        old,
        python_model=ENTRY_FILE,
        artifacts={"learner": str(old / "learner.pt"), "meta": str(old / META_FILE)},
        metadata={"miml_tune": meta},
    )
    common = ["predict", "--model", model_uri, "--data", "birds", "--tracking-uri", uri, "--json"]
    refused = cli(tmp_path, *common)
    assert refused.returncode == 2, refused.stderr[-2000:]
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-pickled-model" in lines[0], refused.stderr
    assert "promoted by miml-tune 0.1 as a pickle" in lines[0]
    trusted = cli(tmp_path, *common, "--trust-pickled-model")
    assert trusted.returncode == 0, trusted.stderr[-2000:]
    assert json.loads(trusted.stdout)["bags"] == data.n_bags
    with pytest.raises(MimlTuneError, match="--trust-pickled-model"):
        load_learner(old)


@pytest.mark.parametrize(
    "damage",
    ["truncated", "unknown class", "missing tensor", "wrong shape"],
)
def test_a_damaged_saved_learner_is_one_line(tmp_path: Path, damage: str) -> None:
    learner, data = _trained()
    save_learner(learner, tmp_path, _meta(data))
    path = tmp_path / LEARNER_FILE
    document = json.loads(path.read_text())
    if damage == "truncated":
        path.write_text(path.read_text()[:200])
    elif damage == "unknown class":
        document["attributes"]["scaler"]["__object__"] = "os.system"
        path.write_text(json.dumps(document))
    else:
        tensors = torch.load(tmp_path / "tensors.pt", weights_only=True)
        key = next(k for k in tensors if k.startswith("model/"))
        if damage == "missing tensor":
            del tensors[key]
        else:
            tensors[key] = torch.zeros(3, 3)
        torch.save(tensors, tmp_path / "tensors.pt")
    with pytest.raises(MimlTuneError) as caught:
        load_learner(tmp_path)
    message = str(caught.value)
    assert message.startswith(f"cannot read the saved learner in {tmp_path}: ")
    assert "\n" not in message and len(message) < 1000


def test_mimlsvm_keeps_scikit_learns_decision_function_as_arrays() -> None:
    from sklearn.svm import SVC

    from tuner.learners.mimlsvm import KernelMachine

    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(80, 6)), rng.integers(0, 2, size=80)
    test = rng.normal(size=(30, 6))
    for kernel in ("rbf", "linear"):
        svm = SVC(kernel=kernel, C=2.0, gamma=0.3).fit(z, y)
        machine = KernelMachine.of(svm)
        np.testing.assert_allclose(
            machine.decision_function(test), svm.decision_function(test), atol=1e-9
        )


def test_every_learner_round_trips_as_data_through_the_served_form(tmp_path: Path) -> None:
    """The served wrapper predicts what the learner does (the whole zoo is in test_serving)."""
    from tuner.serving import _load_pyfunc

    learner, data = _trained("mimlsvm")
    save_learner(learner, tmp_path, _meta(data, "mimlsvm"))
    served = _load_pyfunc(str(tmp_path))
    frame = served.predict(bags_to_frame(data.bags[:20], data.bag_ids[:20]))
    expected = predict_bags(learner, list(data.bags[:20]))
    np.testing.assert_allclose(frame[list(data.label_names)].to_numpy(), expected, atol=1e-9)
