"""The MLflow schema every method's runs follow: default tags on every run, the headline metrics."""
import mlflow

from nascore.tracking import configure, start_run
from nascore.tracking.schema import HEADLINE, check_run, headline


def test_every_run_gets_method_hardware_and_the_dvc_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1a2b3")
    configure()
    with start_run("darts", "evaluate-cifar10", tags={"stage": "evaluate", "dataset": "CIFAR-10", "profile": "ci",
                                                      "seed": "0"}) as run:
        mlflow.log_metrics(headline(top1_err=10.0, top5_err=1.0, params_m=3.3, macs_m=500.0, search_cost_s=12.0,
                                    train_cost_s=30.0, train_epochs=2))
    got = mlflow.get_run(run.info.run_id).data
    assert got.tags["method"] == "darts" and got.tags["dvc_exp"] == "exp-1a2b3" and got.tags["hardware"]
    assert check_run(got.metrics, got.tags) == []
    assert got.metrics["test_top1_err"] == 10.0 and got.metrics["train_epochs"] == 2.0


def test_a_run_missing_schema_fields_is_named():
    assert headline(top1_err=1.0, top5_err=None, params_m=1.0, macs_m=None, search_cost_s=None, train_cost_s=2.0,
                    train_epochs=1) == {"test_top1_err": 1.0, "params_m": 1.0, "train_cost_s": 2.0, "train_epochs": 1.0}
    missing = check_run({"test_top1_err": 1.0}, {"method": "darts", "stage": "evaluate"})
    assert "metric test_top5_err" in missing and "tag seed" in missing and "tag dataset" in missing
    assert len([m for m in missing if m.startswith("metric")]) == len(HEADLINE) - 1
