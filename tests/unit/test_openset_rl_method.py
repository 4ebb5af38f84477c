"""openset_rl as a method: params, search per variant with R = Acc + rho Fd, open-set
evaluation per split, fine-tuning resumed after a kill."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest

from nascore.cli import main
from nascore.config import ParamsError
from nascore.methods import METHODS

from conftest import set_yaml


def test_paper_settings(project):
    m = METHODS["openset_rl"].from_project(project, "paper")
    assert m.p.space.ops == ["conv3x3", "conv5x5", "sep_conv3x3", "sep_conv5x5", "max_pool3x3", "avg_pool3x3",
                             "skip", "no_skip"]  # para. 0056
    assert {(v.name, v.eta > 0, v.rho > 0) for v in m.p.search.variants} == {
        ("full", True, True), ("no_fd", True, False), ("no_center", False, True), ("softmax", False, False)}
    splits = m._protocol("cifar10_osr")
    assert len(splits) == 5 and all(len(s["known"]) == 6 and len(s["unknown"]) == 4 for s in splits)
    assert all(not set(s["known"]) & set(s["unknown"]) for s in splits)
    assert m.p.search.known_classes == splits[0]["known"]  # the search sees split 0's known classes only


@pytest.mark.parametrize("key,value,message", [
    ("space.ops", ["conv3x3", "conv9x9"], r"space.ops: unknown op 'conv9x9'"),
    ("search.variants", [{"name": "a", "eta": 0.0, "rho": 0.0}, {"name": "a", "eta": 1.0, "rho": 0.0}],
     r"search.variants: need at least one variant with distinct names"),
    ("finetune.protocols.cifar10_osr", [[0, 1, 2, 3, 4, 10]], r"split 0: CIFAR-10 classes must be distinct in 0..9"),
])
def test_bad_params_name_the_key(project, key, value, message):
    set_yaml(project / "params" / "openset_rl.yaml", key, value)
    with pytest.raises(ParamsError, match=message):
        METHODS["openset_rl"].from_project(project, "paper").params


def _cli(root, *args):
    assert main(["--root", str(root), *args]) == 0


def test_search_finetune_evaluate_report(cifar_project):
    root = cifar_project
    _cli(root, "search", "--method", "openset_rl")
    m = METHODS["openset_rl"].from_project(root)
    for v in m.p.search.variants:
        kids = json.loads((root / "runs" / "openset_rl" / "search" / v.name / "children.json").read_text())["children"]
        assert len(kids) == m.p.search.iterations * m.p.search.children
        for k in kids:
            assert k["status"] == "ok" and 0 < k["fd"] <= 1
            assert k["reward"] == pytest.approx(k["val_acc"] + v.rho * k["fd"])  # eq. 2
    _cli(root, "finetune", "--method", "openset_rl", "--dataset", "cifar10_osr")
    _cli(root, "evaluate", "--method", "openset_rl", "--dataset", "cifar10_osr")
    _cli(root, "prepare", "--dataset", "cifar100")  # records "not run": no CIFAR-100 here
    _cli(root, "finetune", "--method", "openset_rl", "--dataset", "cifar_plus10")
    _cli(root, "evaluate", "--method", "openset_rl", "--dataset", "cifar_plus10")
    _cli(root, "report", "--method", "openset_rl")
    met = json.loads((root / "reports" / "metrics" / "openset_rl-cifar10_osr.json").read_text())
    for v in m.p.search.variants:
        agg = met["variants"][v.name]
        assert agg["splits"] == 5
        for row in agg["per_split"]:
            assert (row["known_images"], row["unknown_images"]) == (60, 40)  # 10 test images per class
            assert all(0.0 <= row[k] <= 1.0 for k in row if k.startswith(("auroc", "oscr", "closed")))
            assert row["oscr_msp"] <= row["closed_acc"] + 1e-9  # the OSCR curve ends at the closed-set accuracy
    plus = json.loads((root / "reports" / "metrics" / "openset_rl-cifar_plus10.json").read_text())
    assert plus["status"] == "not run" and "CIFAR-100" in plus["reason"]
    report = (root / "reports" / "openset_rl.md").read_text()
    assert "The patent reports no numbers." in report
    assert f"| full | {met['variants']['full']['closed_acc']:.3f} ±" in report
    assert "ours: not run: no CIFAR-100 data at" in report


def _finetune(root, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(root), "finetune", "--method",
                           "openset_rl", "--dataset", "cifar10_osr"], env=env, capture_output=True, text=True)


def test_killed_finetune_resumes_to_the_same_networks(cifar_project, tmp_path):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.openset_rl.finetune.train.checkpoint_every_steps", 2)
    _cli(cifar_project, "search", "--method", "openset_rl")
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)
    killed = _finetune(cifar_project, {"NASCORE_KILL_AT_STEP": "2@3"})  # mid-way through the third network
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert _finetune(cifar_project).returncode == 0
    assert _finetune(twin).returncode == 0
    for root in (cifar_project, twin):
        _cli(root, "evaluate", "--method", "openset_rl", "--dataset", "cifar10_osr")
    read = lambda r: json.loads((r / "reports" / "metrics" / "openset_rl-cifar10_osr.json").read_text())  # noqa: E731
    a, b = read(cifar_project)["variants"], read(twin)["variants"]
    assert {v: x["per_split"] for v, x in a.items()} == {v: x["per_split"] for v, x in b.items()}
