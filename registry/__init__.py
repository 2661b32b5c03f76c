"""MLflow registry: ladder runs, law versions, predictions, target evaluations, drift gate."""
