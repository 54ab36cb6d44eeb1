"""MIMLSVM (Zhou & Zhang 2007): bags as distances to k-medoids, then one SVM per label."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from sklearn.svm import SVC

from models.hausdorff import HAUSDORFF_VARIANTS, hausdorff_distances, k_medoids, pack_bags
from tuner.data.preprocess import InstanceStandardizer
from tuner.learners.base import Learner
from tuner.learners.checks import check_training_data
from tuner.learners.params import POSITIVE, Interval, at_least, one_of, param

KERNELS = ("rbf", "linear")


@dataclass
class KernelMachine:
    """The decision function of a fitted binary ``SVC`` as plain arrays, so that a saved MIMLSVM
    is data (no scikit-learn object, no pickle): ``f(z) = sum_i a_i K(s_i, z) + b`` over the
    support vectors ``s_i`` with dual coefficients ``a_i``; scikit-learn's own
    ``decision_function``, to rounding."""

    support_vectors: np.ndarray  # (n_sv, k)
    dual_coef: np.ndarray  # (n_sv,)
    intercept: float
    kernel: str
    gamma: float

    @classmethod
    def of(cls, svm: SVC) -> KernelMachine:
        return cls(
            support_vectors=np.asarray(svm.support_vectors_, dtype=np.float64),
            dual_coef=np.asarray(svm.dual_coef_, dtype=np.float64)[0],
            intercept=float(svm.intercept_[0]),
            kernel=str(svm.kernel),
            gamma=float(svm.gamma),  # a number here: the learner passes gamma / k
        )

    def decision_function(self, z: np.ndarray) -> np.ndarray:
        s = self.support_vectors
        if self.kernel == "linear":
            gram = z @ s.T
        else:  # rbf
            squared = (z * z).sum(1)[:, None] + (s * s).sum(1)[None, :] - 2.0 * (z @ s.T)
            gram = np.exp(-self.gamma * np.maximum(squared, 0.0))
        return np.asarray(gram @ self.dual_coef + self.intercept)


@dataclass(frozen=True)
class MIMLSVMParams:
    """MIMLSVM's hyper-parameters and their defaults."""

    ratio: float = param(0.2, Interval(0, 1, closed="right"))
    distance: str = param("max", one_of(HAUSDORFF_VARIANTS))
    standardize: bool = True
    kernel: str = param("rbf", one_of(KERNELS))
    C: float = param(1.0, POSITIVE)
    gamma: float = param(1.0, POSITIVE)
    epochs: int = param(1, at_least(1))


class MIMLSVMLearner(Learner):
    r"""MIMLSVM, the classic degeneration-to-single-instance peer (Zhou & Zhang, NIPS 2007).

    :meth:`setup` standardises the instances with the training instances' statistics
    (``standardize=False`` only centres them: the papers' distances on raw features). The first
    :meth:`train_epoch` does all the work, in closed form:

    1. Hausdorff distances between the training bags (``distance``: ``"max"``, the paper's, or
       ``"average"``), and k-medoids clustering of the training bags into
       ``k = max(1, round(ratio * n_train))`` clusters (the paper uses 20%), seeded by ``seed``
       (:func:`models.hausdorff.k_medoids`);
    2. every bag becomes :math:`z = (d_H(X, M_1), \dots, d_H(X, M_k))`, its distances to the
       medoids; these columns are standardised with the training bags' statistics (an
       addition to the paper, so that one ``gamma`` suits every dataset and ``ratio``);
    3. one scikit-learn :class:`~sklearn.svm.SVC` per label (one-vs-rest, MLSVM), with
       ``kernel``, ``C`` and the RBF kernel :math:`\exp(-\gamma \frac{1}{k}\lVert z - z'
       \rVert^2)`: ``gamma`` acts on the *mean* squared difference per medoid, so ``gamma=1``
       is scikit-learn's ``gamma="scale"`` on standardised columns and its meaning does not
       change with ``k``.

    A label with a single class in the training bags gets no SVM: it is predicted with its
    training frequency (0 or 1) for every bag.

    Scores: :meth:`predict` returns :math:`\sigma(f_l(z))`, the logistic function of the SVM's
    decision value. It is increasing, so the ranking metrics see the SVM's ranking, and it is
    0.5 exactly on the decision boundary, so the metrics' 0.5 threshold is the SVM's own
    decision (MLSVM's T-criterion, which forces the top label on when no label is predicted,
    is not applied). The values are scores in (0, 1), not calibrated probabilities: Platt
    scaling (``SVC(probability=True)``) would run an internal 5-fold cross-validation per label
    and its threshold would no longer be the SVM's. The training loss reported is the mean
    hinge loss :math:`\max(0, 1 - t f_l(z))`, ``t = +/-1``, over bags and labels.
    """

    name: ClassVar[str] = "mimlsvm"
    training_only: ClassVar[tuple[str, ...]] = ("_x", "_labels", "_sizes")
    params: ClassVar[type] = MIMLSVMParams

    def setup(self, bags: Sequence[np.ndarray], labels: np.ndarray) -> None:
        y = check_training_data(self.name, bags, labels, self.n_features, self.n_labels)
        self.scaler = InstanceStandardizer().fit(bags)
        self._x, self._sizes = pack_bags(self._instances(bags))
        self._labels = y.astype(np.int64)
        self._svms: list[KernelMachine | float] | None = None
        self._loss = math.nan

    def encode(self, bags: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Standardised packed instances ``((N, d), (n,))`` of ``bags``; ``None`` for no bags."""
        if len(bags) == 0:
            return None
        return pack_bags(self._instances(bags))

    def train_epoch(self) -> float:
        if self._svms is None:
            c = self.config
            distances = hausdorff_distances(
                self._x, self._sizes, self._x, self._sizes, how=c["distance"]
            )
            n = len(self._sizes)
            k = max(1, min(n, round(c["ratio"] * n)))
            generator = torch.Generator().manual_seed(self.seed)
            medoids = k_medoids(distances, k, generator=generator)
            self.medoids = medoids
            starts = torch.cumsum(self._sizes, 0) - self._sizes
            rows = torch.cat(
                [torch.arange(int(starts[j]), int(starts[j] + self._sizes[j])) for j in medoids]
            )
            self._medoid_x, self._medoid_sizes = self._x[rows], self._sizes[medoids]
            z = distances[:, medoids].double().numpy()
            self._z_mean = z.mean(axis=0)
            std = z.std(axis=0)
            self._z_std = np.where(std > 0, std, 1.0)
            z = (z - self._z_mean) / self._z_std
            svms: list[KernelMachine | float] = []
            hinge = np.zeros((n, self.n_labels))
            for label in range(self.n_labels):
                y = self._labels[:, label]
                if y.min() == y.max():
                    svms.append(float(y[0]))
                    hinge[:, label] = 0.0
                    continue
                svm = SVC(kernel=c["kernel"], C=c["C"], gamma=c["gamma"] / k)
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=UserWarning)
                    svm.fit(z, y)
                svms.append(KernelMachine.of(svm))
                hinge[:, label] = np.maximum(0.0, 1.0 - (2 * y - 1) * svm.decision_function(z))
            loss = float(hinge.mean())
            if not math.isfinite(loss):
                raise FloatingPointError(
                    f"MIMLSVM training loss is {loss} in epoch 1 (C={c['C']}, "
                    f"gamma={c['gamma']}); try smaller C or gamma"
                )
            self._svms, self._loss = svms, loss
        return self._loss

    def predict(self, encoded: tuple[torch.Tensor, torch.Tensor] | None) -> np.ndarray:
        if self._svms is None:
            raise RuntimeError("MIMLSVMLearner.predict() called before train_epoch()")
        if encoded is None:
            return np.zeros((0, self.n_labels))
        x, sizes = encoded
        distances = hausdorff_distances(
            x, sizes, self._medoid_x, self._medoid_sizes, how=self.config["distance"]
        )
        z = (distances.double().numpy() - self._z_mean) / self._z_std
        out = np.empty((len(sizes), self.n_labels))
        for label, svm in enumerate(self._svms):
            if isinstance(svm, float):
                out[:, label] = svm
            else:
                out[:, label] = 1.0 / (1.0 + np.exp(-svm.decision_function(z)))
        return out

    def _instances(self, bags: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Standardised instances, or with ``standardize=False`` only centred (which leaves
        every distance unchanged and keeps float32 distances accurate on raw features)."""
        scaled = self.scaler.transform(bags)
        if self.config["standardize"]:
            return scaled
        return [(bag * self.scaler.std_).astype(np.float32) for bag in scaled]
