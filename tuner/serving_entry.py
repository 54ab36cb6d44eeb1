"""The file MLflow runs to build a promoted model when it is loaded ("models from code").

It only names the wrapper class of the installed package, so no wrapper object is pickled. The
trained learner itself (``learner.pt``) is a torch pickle: it loads with the same miml-tune
version installed, and like any pickle it must come from a store you trust.
"""

from mlflow.models import set_model

from tuner.serving import MimlTuneModel

set_model(MimlTuneModel())
