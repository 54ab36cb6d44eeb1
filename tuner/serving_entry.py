"""The file MLflow ran to build a model promoted by miml-tune 0.1 ("models from code"); kept
so that such a model still loads with ``--trust-pickled-model`` (its ``learner.pt`` is a torch
pickle). New models are data, in MLflow's loader-module form (:mod:`tuner.serving`).
"""

from mlflow.models import set_model

from tuner.serving import MimlTuneModel

set_model(MimlTuneModel())
