"""Active learning on top of a tuned model: which unlabelled bags an expert should label next.

- :mod:`tuner.active.strategies`: the query strategies (random, uncertainty, margin,
  cardinality, MMC, k-center) and :func:`~tuner.active.strategies.query`;
- :mod:`tuner.active.query`: ``miml-tune active query``, a pool ranked for a registered model;
- :mod:`tuner.active.simulate` and :mod:`tuner.active.run`: ``miml-tune active simulate``, the
  pool-based experiment with the known labels as the oracle, logged to MLflow.
"""
