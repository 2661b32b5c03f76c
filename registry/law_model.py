"""MLflow models-from-code file for a fitted law: the model is this code plus `fit.json`.

Not imported by the package: MLflow copies this file into each registered law version and runs
it at load time, so a version holds no pickled objects, only JSON parameters.
"""

import json

import mlflow
import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel

from taskladder.laws.chained import ChainedFit
from taskladder.registry.laws import OUTPUT_COLUMNS


class LawModel(PythonModel):
    """predict(table of N, D) -> task loss and accuracy with the fit's interval, row by row."""

    def load_context(self, context) -> None:
        with open(context.artifacts["fit"]) as fh:
            self.fit = ChainedFit.from_dict(json.load(fh))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        table = pd.DataFrame(model_input)
        missing = [c for c in ("N", "D") if c not in table.columns]
        if missing:
            raise ValueError(f"law input: missing column(s) {', '.join(missing)}; expected N and D")
        N, D = (np.asarray(table[c], dtype=float) for c in ("N", "D"))
        out = self.fit.predict(N, D)
        return pd.DataFrame({c: out[c] for c in OUTPUT_COLUMNS}, index=table.index)


mlflow.models.set_model(LawModel())
