"""Query strategies: which unlabelled bags an expert should label next.

Each strategy is a function with the signature of :data:`Strategy`: it ranks a pool of bags
from the model's label scores (``(n, L)`` probabilities, 0.5 the decision point) and, where
it uses them, the bags' vectors and the label cardinality of the training data, and returns the
indices of the ``batch`` bags to label first, best first, with each bag's utility. As in modAL
and scikit-activeml, a strategy sees only what a model predicts on the pool; the loop that
trains and queries (:mod:`tuner.active.simulate`) or the command that ranks a pool
(:mod:`tuner.active.query`) calls it.

Ties are broken by a seeded random order, so a query is deterministic for a seed and does not
favour the file's first bags.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tuner.errors import MimlTuneError


@dataclass(frozen=True)
class Pool:
    """What a strategy may look at: the model's scores on the pool, the pool's bag vectors
    (mean of each bag's standardised instances; for diversity) and the training labels'
    cardinality (mean labels per bag)."""

    scores: np.ndarray
    vectors: np.ndarray
    cardinality: float


#: ``strategy(pool, batch, rng) -> (indices best first, utilities of those bags)``.
Strategy = Callable[[Pool, int, np.random.Generator], tuple[np.ndarray, np.ndarray]]

_EPS = 1e-12


def entropy(scores: np.ndarray) -> np.ndarray:
    """Mean binary entropy of each bag's label scores, in bits (0 certain, 1 all at 0.5)."""
    p = np.clip(scores, _EPS, 1 - _EPS)
    return np.asarray((-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=1))


def _top(
    utility: np.ndarray, batch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The ``batch`` bags of highest utility, ties in a seeded random order."""
    order = np.lexsort((rng.permutation(len(utility)), -utility))[:batch]
    return order, utility[order]


def random_strategy(
    pool: Pool, batch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Random sampling, the control every other strategy is measured against."""
    order = rng.permutation(len(pool.scores))[:batch]
    return order, np.zeros(len(order))


def uncertainty(pool: Pool, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Uncertainty sampling (Lewis and Gale, SIGIR 1994), for multi-label data as the mean
    binary entropy over the labels (the utility: :func:`entropy`)."""
    return _top(entropy(pool.scores), batch, rng)


def margin(pool: Pool, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Minimum-margin sampling (Scheffer et al., IDA 2001; for multi-label, Li, Wang and Sung,
    ICIP 2004, "MML"): a bag is as uncertain as its least certain label, the smallest distance
    of any label score to the decision point 0.5 (utility: ``0.5 - min_j |s_j - 0.5|``)."""
    utility = 0.5 - np.abs(pool.scores - 0.5).min(axis=1)
    return _top(utility, batch, rng)


def cardinality(pool: Pool, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Label cardinality inconsistency (Li and Guo, IJCAI 2013): the distance between the
    number of labels the model predicts for a bag (scores >= 0.5) and the mean number of labels
    per bag in the training data; a bag whose predicted label count is unusual is informative."""
    predicted = (pool.scores >= 0.5).sum(axis=1)
    return _top(np.abs(predicted - pool.cardinality).astype(float), batch, rng)


def mmc(pool: Pool, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Maximum loss reduction with maximal confidence (MMC; Yang, Sun, Wang, Chen and Zhao,
    KDD 2009), as it fits probabilistic models: the most confident label vector of a bag takes
    its ``m`` highest-scored labels, ``m`` the training cardinality rounded (the paper predicts
    ``m`` with a regression on the sorted scores; the cardinality is that model's intercept), and
    the expected loss reduction is ``sum_j (1 - y_j f_j) / 2`` with ``f_j = 2 s_j - 1`` in [-1, 1]
    in place of the SVM's output."""
    scores = pool.scores
    m = int(min(scores.shape[1], max(1, round(pool.cardinality))))
    y = -np.ones_like(scores)
    best = np.argsort(-scores, axis=1, kind="stable")[:, :m]
    np.put_along_axis(y, best, 1.0, axis=1)
    utility = ((1 - y * (2 * scores - 1)) / 2).sum(axis=1)
    return _top(utility, batch, rng)


def kcenter(pool: Pool, batch: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A diverse batch of uncertain bags: k-center greedy (the core-set rule of Sener and
    Savarese, ICLR 2018) over the ``4 * batch`` most uncertain bags (:func:`uncertainty`), in the
    space of the bags' vectors and label scores. It starts from the most uncertain bag and adds
    the bag farthest from those chosen, so a batch is not ``batch`` near-duplicates; a bag's
    utility is its distance to the chosen ones when it was added (the first bag's: its
    uncertainty). Copies of a chosen bag come last, the most uncertain first."""
    candidates, first = uncertainty(pool, min(len(pool.scores), 4 * batch), rng)
    vectors = pool.vectors[candidates]
    spread = vectors.std(axis=0)
    space = np.hstack([vectors / np.where(spread > 0, spread, 1.0), pool.scores[candidates]])
    chosen = [0]
    distance = np.linalg.norm(space - space[0], axis=1)
    distance[0] = -np.inf  # never chosen twice
    utilities = [float(first[0])]  # the first bag: its uncertainty (no distance yet)
    while len(chosen) < min(batch, len(candidates)):
        # The farthest bag; among bags at distance 0 (copies of chosen ones) the most uncertain.
        nxt = int(np.argmax(distance))
        chosen.append(nxt)
        utilities.append(max(0.0, float(distance[nxt])))
        distance = np.minimum(distance, np.linalg.norm(space - space[nxt], axis=1))
        distance[chosen] = -np.inf
    return candidates[np.asarray(chosen)], np.asarray(utilities)


STRATEGIES: dict[str, Strategy] = {
    "random": random_strategy,
    "uncertainty": uncertainty,
    "margin": margin,
    "cardinality": cardinality,
    "mmc": mmc,
    "kcenter": kcenter,
}


def resolve_strategy(name: str) -> Strategy:
    """The strategy called ``name``, or one line naming the strategies there are."""
    try:
        return STRATEGIES[name]
    except KeyError:
        raise MimlTuneError(
            f"unknown query strategy {name!r}; choose one of {', '.join(STRATEGIES)}"
        ) from None


def query(strategy: str, pool: Pool, batch: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``batch`` pool bags to label next by ``strategy``, best first, and their utilities.

    Raises:
        MimlTuneError: an unknown strategy, a batch below 1 or larger than the pool.
    """
    chosen = resolve_strategy(strategy)
    n = len(pool.scores)
    if isinstance(batch, bool) or not isinstance(batch, (int, np.integer)) or batch < 1:
        raise MimlTuneError(f"--batch must be a whole number >= 1, got {batch!r}")
    if batch > n:
        raise MimlTuneError(
            f"--batch {batch} is larger than the pool ({n} unlabelled bags); ask for at most {n}"
        )
    indices, utilities = chosen(pool, int(batch), np.random.default_rng(seed))
    return np.asarray(indices, dtype=np.int64), np.asarray(utilities, dtype=np.float64)


def bag_vectors(bags: list[np.ndarray], mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """Each bag's mean instance, standardised by ``mean`` and ``std`` (the instances' of the
    data at hand: the pool's in a query, the development bags' in a simulation; ``kcenter``
    rescales the vectors itself, so the choice does not change its picks)."""
    safe = np.where(std > 0, std, 1.0)
    return np.stack([((b - mean) / safe).mean(axis=0) for b in bags]).astype(np.float64)
