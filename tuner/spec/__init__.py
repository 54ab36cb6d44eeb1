"""Search specifications: a named YAML file in ``search_spaces/``, validated on load.

A space file states the model, the dataset, the metric and its direction, the cross-validation
protocol, the holdout, the budget, the scheduler, the sampler, and each hyper-parameter's domain::

    name: birds
    model: gamil_c
    dataset: birds
    metric: average_precision
    mode: max
    cv: {folds: 3, repeats: 5}
    holdout: 0.2
    seed: 0
    budget: {trials: 16, max_epochs: 30}
    scheduler: {name: asha, grace_period: 5, reduction_factor: 3}
    sampler: tpe
    params:
      batch_size: [64, 128, 256]        # a list is a categorical choice
      lr: {loguniform: [1.0e-4, 1.0e-2]} # or one of: choice, uniform, loguniform, int
      pooling: attention                # a scalar is fixed

Every key is checked: an unknown key, a wrong type, an empty domain or a name that does not
exist is a :class:`~tuner.errors.MimlTuneError` naming the file and the key.

Each searched domain is an Optuna distribution (:mod:`tuner.spec.domains`); the Ray Tune
``param_space``, the search's starting point, the model checks and the report read the same
objects.

Layout: :mod:`~tuner.spec.domains` (a domain: parse, write back, translate for Ray Tune),
:mod:`~tuner.spec.space` (:class:`SearchSpec` and its checks), :mod:`~tuner.spec.parse` (files
and names to a :class:`SearchSpec`), :mod:`~tuner.spec.loader` (the YAML rules: duplicate keys
refused, YAML 1.2 floats such as ``1e-3``, alias expansion bounded).
"""

from tuner.spec.domains import (
    DOMAIN_KINDS,
    domain_kind,
    domain_size,
    domain_to_yaml,
    in_domain,
    parse_domain,
    to_tune,
)
from tuner.spec.durations import parse_duration
from tuner.spec.parse import (
    load_space,
    model_space_names,
    model_space_path,
    parse_space,
    space_names,
    space_path,
)
from tuner.spec.space import DEFAULT_PEERS, FIDELITIES, SAMPLERS, SCHEDULERS, SearchSpec

__all__ = [
    "DEFAULT_PEERS",
    "DOMAIN_KINDS",
    "FIDELITIES",
    "SAMPLERS",
    "SCHEDULERS",
    "SearchSpec",
    "domain_kind",
    "domain_size",
    "domain_to_yaml",
    "in_domain",
    "load_space",
    "model_space_names",
    "model_space_path",
    "parse_domain",
    "parse_duration",
    "parse_space",
    "space_names",
    "space_path",
    "to_tune",
]
