"""MLflow: runs, genotype artifacts and tags; an unreachable server fails before compute."""
import json

import pytest

from nascore.cli import main
from nascore.tracking import TrackingUnavailable, configure


def test_unreachable_server_fails_fast(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    with pytest.raises(TrackingUnavailable, match=r"http://127.0.0.1:9 cannot be reached"):
        configure()


def test_health_probe_is_bounded_by_a_timeout(monkeypatch):
    import urllib.error

    from nascore.tracking import mlflow as tracking

    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append((url, timeout))
        raise urllib.error.URLError("timed out")

    monkeypatch.setattr(tracking.urllib.request, "urlopen", fake_urlopen)
    with pytest.raises(TrackingUnavailable, match="cannot be reached"):
        tracking.check_reachable("http://mlflow.example:5000/")
    assert calls == [("http://mlflow.example:5000/health", 5.0)]


def test_search_with_unreachable_server_writes_nothing(cifar_project, monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 3
    assert "cannot be reached" in capsys.readouterr().err
    assert not (cifar_project / "runs").exists()


def test_search_logs_genotype_artifact_tag_and_epoch_metrics(cifar_project, capsys):
    import mlflow

    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0
    status = json.loads((cifar_project / "runs" / "darts" / "search" / "status.json").read_text())
    run = mlflow.get_run(status["mlflow_run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "darts/search"
    assert run.data.tags["genotype_hash"] == status["genotype_hash"]
    manifest = json.loads((cifar_project / "data" / "prepared" / "cifar10" / "manifest.json").read_text())
    (given,) = run.inputs.dataset_inputs  # the prepared dataset it read: S_train and S_val both from training
    assert (given.dataset.name, given.dataset.digest) == ("cifar10", manifest["sha256"][:16])
    assert json.loads(given.dataset.source) == {"uri": manifest["source"]["path"]}
    assert {t.key: t.value for t in given.tags}["mlflow.data.context"] == "training"
    assert run.data.params["search.supernet.C"] == "4"
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "val_err")
    assert [m.step for m in history] == [1, 2]
    art = mlflow.artifacts.load_dict(f"runs:/{run.info.run_id}/genotype.json")
    assert art["schema"] == "nascore.genotype/1" and set(art["cells"]) == {"normal", "reduce"}
