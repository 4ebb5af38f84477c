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
