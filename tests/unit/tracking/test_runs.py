"""Issue 14, one MLflow schema: run names that say the method, the prepared datasets as run inputs, the
trained network as a registrable model, and run durations that cover their own work only."""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from nascore.cli import main

from conftest import set_yaml


def _cli(root, *args):
    assert main(["--root", str(root), *args]) == 0


def _inputs(run) -> list[tuple[str, str, str, dict]]:
    """(name, digest, context, source) of each dataset input of `run`."""
    out = []
    for d in run.inputs.dataset_inputs:
        tags = {t.key: t.value for t in d.tags}
        out.append((d.dataset.name, d.dataset.digest, tags["mlflow.data.context"], json.loads(d.dataset.source)))
    return sorted(out, key=lambda x: (x[0], x[2]))


def m_exp(run_id: str) -> str:
    import mlflow

    return mlflow.get_run(run_id).info.experiment_id


def _manifest(root: Path, dataset: str = "cifar10") -> dict:
    return json.loads((root / "data" / "prepared" / dataset / "manifest.json").read_text())


@pytest.fixture
def darts_evaluated(cifar_project):
    """darts fine-tuned (the published DARTS_V2 genotype: no search needed) and evaluated on cifar10."""
    set_yaml(cifar_project / "params" / "darts.yaml", "finetune.genotype", "darts_v2")
    _cli(cifar_project, "finetune", "--method", "darts", "--dataset", "cifar10")
    _cli(cifar_project, "evaluate", "--method", "darts", "--dataset", "cifar10")
    return cifar_project


def test_finetune_and_evaluate_runs_are_named_by_method_and_log_their_dataset(darts_evaluated):
    import mlflow

    root = darts_evaluated
    status = json.loads((root / "runs" / "darts" / "finetune" / "cifar10" / "status.json").read_text())
    finetune = mlflow.get_run(status["mlflow_run_id"])
    assert finetune.info.run_name == "darts/finetune-cifar10" and finetune.data.tags["stage"] == "finetune"
    (evaluate,) = mlflow.search_runs(experiment_names=["darts"], filter_string="tags.stage = 'evaluate'",
                                     output_format="list")
    assert evaluate.info.run_name == "darts/evaluate-cifar10"
    manifest = _manifest(root)
    digest = manifest["sha256"][:16]
    source = {"uri": manifest["source"]["path"]}
    assert source == {"uri": "data/raw/cifar-10-batches-py"}  # as the manifest names it: relative, no machine path
    assert _inputs(finetune) == [("cifar10", digest, "training", source)]
    assert _inputs(evaluate) == [("cifar10", digest, "test", source)]
    assert {d.dataset.source_type for d in finetune.inputs.dataset_inputs} == {"local"}
    tags = {t.key: t.value for t in evaluate.inputs.dataset_inputs[0].tags}
    assert tags["images"] == str(sum(manifest["counts"]["test"].values())) and tags["classes"] == "10"
    assert str(root) not in json.dumps([d.dataset.source for d in finetune.inputs.dataset_inputs])


def test_evaluate_nests_under_finetune_without_reopening_it(darts_evaluated):
    """The finetune run ends when fine-tuning ends: the evaluate run (nested under it) and the test errors
    logged into it afterwards do not move its end time."""
    import mlflow

    status = json.loads((darts_evaluated / "runs" / "darts" / "finetune" / "cifar10" / "status.json").read_text())
    finetune = mlflow.get_run(status["mlflow_run_id"])
    (evaluate,) = mlflow.search_runs(experiment_names=["darts"], filter_string="tags.stage = 'evaluate'",
                                     output_format="list")
    assert evaluate.data.tags["mlflow.parentRunId"] == finetune.info.run_id
    assert finetune.info.status == "FINISHED" and finetune.info.end_time <= evaluate.info.start_time
    metrics = json.loads((darts_evaluated / "reports" / "metrics" / "darts-cifar10.json").read_text())
    assert finetune.data.metrics["test_top1_err"] == metrics["top1_err"]
    assert evaluate.data.metrics["test_top1_err"] == metrics["top1_err"]


def test_finetuned_network_is_a_registrable_model_that_predicts_its_logits(darts_evaluated):
    import mlflow

    from nascore.data.augment import normalize
    from nascore.genotype import Genotype
    from nascore.layout import load_checkpoint
    from nascore.methods import METHODS

    root = darts_evaluated
    status = json.loads((root / "runs" / "darts" / "finetune" / "cifar10" / "status.json").read_text())
    run_id = status["mlflow_run_id"]
    m = METHODS["darts"].from_project(root)
    saved = load_checkpoint(root / "runs" / "darts" / "finetune" / "cifar10" / "model.pt")
    _, tp = m._train_params("cifar10")
    trained = m.build_network(Genotype.from_json(saved["genotype"]), "cifar", saved["num_classes"], tp)
    trained.load_state_dict(saved["state_dict"])
    trained.eval()
    tensors, _ = m.data("cifar10")
    x = tensors["test_x"][:8]
    with torch.no_grad():
        want = trained(normalize(x, m.params.data.cifar.mean, m.params.data.cifar.std)).numpy()

    (logged,) = [lm for lm in mlflow.search_logged_models(experiment_ids=[m_exp(run_id)], output_format="list")
                 if lm.source_run_id == run_id]
    assert logged.name == "model" and logged.tags["genotype_hash"] == status["genotype_hash"]
    version = mlflow.register_model(f"models:/{logged.model_id}", "darts-cifar10")
    for uri in (f"runs:/{run_id}/model", f"models:/darts-cifar10/{version.version}"):
        model = mlflow.pyfunc.load_model(uri)
        np.testing.assert_allclose(model.predict(x.numpy()), want, rtol=1e-5, atol=1e-5)
    assert isinstance(model.get_raw_model(), torch.nn.Module)

    # data only: no pickled module or Python model, the loader is the installed nascore
    local = Path(mlflow.artifacts.download_artifacts(f"runs:/{run_id}/model"))
    spec = json.loads(next(local.rglob("network.json")).read_text())
    assert spec["network"]["architecture"]["cells"] == saved["genotype"]["cells"]  # the model carries its genotype
    files = {p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file()}
    assert not [f for f in files if f.endswith((".pkl", ".pth", ".py"))], files
    mlmodel = (local / "MLmodel").read_text()
    assert "loader_module: nascore.models.registered" in mlmodel and "cloudpickle" not in mlmodel
    assert any(line.startswith("torch==") for line in (local / "requirements.txt").read_text().splitlines())


def test_a_killed_run_is_ended_by_its_method_qualified_name(cifar_project):
    import mlflow

    from nascore.tracking import configure, start_run
    from nascore.tracking.mlflow import experiment_id

    configure()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    exp = experiment_id("darts")
    client = mlflow.MlflowClient()
    host = {"nascore.host": socket.gethostname(), "nascore.pid": str(dead.pid)}
    same = client.create_run(exp, run_name="darts/finetune-cifar10", tags=host)
    other = client.create_run(exp, run_name="darts/finetune-cifar100", tags=host)
    with start_run("darts", "finetune-cifar10", tags={"stage": "finetune"}) as run:
        pass
    assert mlflow.get_run(run.info.run_id).info.run_name == "darts/finetune-cifar10"
    assert client.get_run(same.info.run_id).info.status == "KILLED"
    assert client.get_run(other.info.run_id).info.status == "RUNNING"  # another stage's run is left alone
    assert os.getpid() != dead.pid


@pytest.mark.parametrize("method,protocol", [("vgg_rl", "cifar10"), ("openset_rl", "cifar10_osr")])
def test_rl_methods_log_inputs_models_and_nest_evaluate(cifar_project, method, protocol):
    import mlflow

    root = cifar_project
    _cli(root, "search", "--method", method)
    if method == "vgg_rl":
        _cli(root, "search", "--method", method, "--stage", "generation")
    _cli(root, "finetune", "--method", method, "--dataset", protocol)
    _cli(root, "evaluate", "--method", method, "--dataset", protocol)
    runs = {r.info.run_name: r for r in mlflow.search_runs(experiment_names=[method], output_format="list")
            if r.data.tags.get("stage") != "search-child"}
    digest = _manifest(root)["sha256"][:16]
    search = [n for n in runs if n.startswith(f"{method}/search")]
    finetune, evaluate = runs[f"{method}/finetune-{protocol}"], runs[f"{method}/evaluate-{protocol}"]
    assert search and all(_inputs(runs[n])[0][:3] == ("cifar10", digest, "training") for n in search)
    if method == "vgg_rl":
        assert [i[:3] for i in _inputs(runs["vgg_rl/generation"])] == [("cifar10", digest, "training")]
    assert [i[:3] for i in _inputs(finetune)] == [("cifar10", digest, "training")]
    assert [i[:3] for i in _inputs(evaluate)] == [("cifar10", digest, "test")]
    assert evaluate.data.tags["mlflow.parentRunId"] == finetune.info.run_id
    assert finetune.info.end_time <= evaluate.info.start_time
    # the headline is logged once the evaluate run has ended, without reopening it
    assert evaluate.info.status == "FINISHED" and "test_top1_err" in evaluate.data.metrics

    status = json.loads((root / "runs" / method / "finetune" / protocol / "status.json").read_text())
    ok = [m for m in status["models"] if m.get("status") == "ok"]
    logged = mlflow.search_logged_models(experiment_ids=[finetune.info.experiment_id], output_format="list")
    assert ok and len(logged) == len(ok) and {lm.source_run_id for lm in logged} == {finetune.info.run_id}
    first = ok[0]
    name = f"rank{first['rank']:02d}" if method == "vgg_rl" else f"{first['variant']}-split{first['split']}"
    model = mlflow.pyfunc.load_model(f"runs:/{finetune.info.run_id}/{name}")
    from nascore.data.augment import normalize
    from nascore.layout import load_checkpoint
    from nascore.methods import METHODS

    from nascore.spaces.block import BlockArchitecture
    from nascore.spaces.chain import ChainArchitecture, ChainNet

    m = METHODS[method].from_project(root)
    saved = load_checkpoint(root / "runs" / method / "finetune" / protocol / first["file"])
    net = (ChainNet(ChainArchitecture.from_json(saved["arch"]), saved["num_classes"]) if method == "vgg_rl"
           else m.network(BlockArchitecture.from_json(saved["arch"]), saved["num_classes"]))
    net.load_state_dict(saved["state_dict"])  # the network as evaluate rebuilds it
    net.eval()
    x = m.data("cifar10")[0]["test_x"][:4]
    with torch.no_grad():
        want = net(normalize(x, m.params.data.cifar.mean, m.params.data.cifar.std)).numpy()
    np.testing.assert_allclose(model.predict(x.numpy()), want, rtol=1e-5, atol=1e-5)
