"""Kill a search mid-epoch (SIGKILL right after a checkpoint) and rerun: it resumes and ends
with the same genotype and alphas as a run that was never interrupted."""
import json
import os
import shutil
import signal
import subprocess
import sys

from conftest import set_yaml


def _search(root, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(root), "search", "--method", "darts"],
                          env=env, capture_output=True, text=True)


def test_killed_search_resumes_to_the_same_genotype(cifar_project, tmp_path):
    # ci profile: 100 S_train images, batch 16 -> 7 steps per epoch, 2 epochs, checkpoint every 4
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.darts.search.epochs", 2)
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)

    killed = _search(cifar_project, {"NASCORE_KILL_AT_STEP": "4"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = cifar_project / "runs" / "darts" / "checkpoints" / "search.pt"
    assert ckpt.is_file() and not (cifar_project / "runs" / "darts" / "search" / "genotype.json").exists()

    resumed = _search(cifar_project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and "epoch 1, step 4" in resumed.stderr
    assert not ckpt.exists()  # removed once the stage completed

    straight = _search(twin)
    assert straight.returncode == 0, straight.stderr[-2000:]
    assert "resumed from" not in straight.stderr

    read = lambda root, name: json.loads((root / "runs" / "darts" / "search" / name).read_text())  # noqa: E731
    assert read(cifar_project, "genotype.json")["cells"] == read(twin, "genotype.json")["cells"]
    a, b = read(cifar_project, "alpha_history.json"), read(twin, "alpha_history.json")
    assert a["epochs"][-1]["alphas"] == b["epochs"][-1]["alphas"]
    assert [e["val_err"] for e in a["epochs"]] == [e["val_err"] for e in b["epochs"]]


def test_a_search_killed_after_its_last_step_keeps_its_work(cifar_project, tmp_path):
    """Killed between the last step and the outputs (issue 13, item 2): the checkpoint is still there,
    the rerun resumes at the end and writes the genotype of an uninterrupted run, and its MLflow run
    ends FINISHED instead of staying RUNNING."""
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.darts.search.epochs", 1)
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)
    killed = _search(cifar_project, {"NASCORE_KILL_AT_STEP": "end"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    ckpt = cifar_project / "runs" / "darts" / "checkpoints" / "search.pt"
    assert ckpt.is_file() and not (cifar_project / "runs" / "darts" / "search" / "genotype.json").exists()

    import torch
    before = torch.load(ckpt, weights_only=True)["elapsed_s"]  # the killed segment's training time
    resumed = _search(cifar_project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resumed from" in resumed.stderr and not ckpt.exists()
    metrics = json.loads((cifar_project / "reports" / "metrics" / "darts-search.json").read_text())
    assert before > 0 and metrics["search_seconds"] >= round(before, 1)  # the search's cost counts every segment
    assert _search(twin).returncode == 0
    read = lambda root: json.loads((root / "runs" / "darts" / "search" / "genotype.json").read_text())  # noqa: E731
    assert read(cifar_project)["cells"] == read(twin)["cells"]

    from mlflow.tracking import MlflowClient
    client = MlflowClient(os.environ["MLFLOW_TRACKING_URI"])  # this test's store, whatever URI an earlier test set
    runs = client.search_runs([client.get_experiment_by_name("darts").experiment_id])
    assert len(runs) == 2 and {r.info.status for r in runs} == {"FINISHED"}  # the killed run was finished, not doubled


def test_a_checkpoint_from_other_code_is_not_resumed(monkeypatch, tmp_path):
    """The fingerprint covers the package's source (issue 13, item 3): after a code change a killed
    stage starts fresh instead of resuming weights the old code computed."""
    import nascore.params as params_module
    from nascore.methods import METHODS
    from nascore.params import source_hash

    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "sub" / "a.py").write_text("x = 1\n")
    before = source_hash(pkg)
    (pkg / "sub" / "a.py").write_text("x = 2\n")
    source_hash.cache_clear()
    assert source_hash(pkg) != before

    from conftest import REPO
    p = METHODS["darts"].from_project(REPO, "ci").params
    fp = p.fingerprint("search")
    monkeypatch.setattr(params_module, "source_hash", lambda: "0" * 16)
    assert p.fingerprint("search") != fp


def test_divergence_is_caught_within_k_steps_not_at_the_epochs_end():
    """NaN is found every `finite_check_every` steps (issue 13, item 10), before that step's hooks
    (a checkpoint of NaN weights), without reading the loss on the host at every step."""
    import pytest
    import torch

    from nascore.train import Divergence, Hook, Trainer

    class Task:
        def new_epoch(self, epoch): ...
        def state_dict(self): return {}
        def load_state_dict(self, state): ...

        def step(self, i):
            loss = torch.tensor(float("nan") if i == 3 else 1.0)  # diverges at the 4th step (index 3)
            return {"loss": loss, "n": torch.tensor(1.0)}

    class Batches:
        def __len__(self): return 100
        def epoch(self, epoch, start=0): return iter(range(start, 100))

    class Steps(Hook):
        seen = 0
        def after_step(self, trainer): Steps.seen += 1

    reads = []
    real = torch.isfinite
    trainer = Trainer(Task(), Batches(), 1, seed=0, hooks=[Steps()], finite_check_every=3)
    try:
        torch.isfinite = lambda t: reads.append(1) or real(t)
        with pytest.raises(Divergence, match=r"train loss is nan by step 6 of epoch 1: the run diverged; lower"):
            trainer.run()
    finally:
        torch.isfinite = real
    assert Steps.seen == 5  # steps 1-5 ran their hooks; step 6's check stopped the run before its hooks
    assert len(reads) == 2  # read after steps 3 and 6 only


def test_paired_batches_resume_mid_epoch_pairs_the_same_val_batches():
    """S_val shorter than S_train: the val side restarts during the epoch; a resume at any step pairs the
    same (train, val) batches as the uninterrupted epoch (issue 13, item 10)."""
    import torch

    from nascore.data.loader import PairedBatches, TensorBatches

    def batches(n, seed):
        return TensorBatches(torch.arange(n).float().view(n, 1), torch.arange(n), 2, lambda x, g: x,
                             shuffle=True, seed=seed)

    pairs = PairedBatches(batches(14, 0), batches(5, 1))  # 7 train batches, 3 val batches
    ids = lambda it: [(t[1].tolist(), v[1].tolist()) for t, v in it]  # noqa: E731
    whole = ids(pairs.epoch(2))
    vals = [v for _, v in whole]
    assert len(whole) == 7 and vals[0:3] != vals[3:6]  # the val side is reshuffled after it runs out
    for start in range(7):
        assert ids(pairs.epoch(2, start)) == whole[start:], start
