"""MLflow tracking: embedded sqlite store by default, a team server via MLFLOW_TRACKING_URI."""
from nascore.tracking.mlflow import (DEFAULT_URI, MLflowHook, TrackingUnavailable, configure, log_genotype,
                                     log_prepared_input, log_to_run, run_name, start_run)

__all__ = ["DEFAULT_URI", "MLflowHook", "TrackingUnavailable", "configure", "log_genotype", "log_prepared_input",
           "log_to_run", "run_name", "start_run"]
