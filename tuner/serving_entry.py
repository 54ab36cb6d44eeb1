"""The file MLflow runs to build a promoted model when it is loaded ("models from code").

It only names the wrapper class of the installed package, so a saved model holds no pickled code.
"""

from mlflow.models import set_model

from tuner.serving import MimlTuneModel

set_model(MimlTuneModel())
