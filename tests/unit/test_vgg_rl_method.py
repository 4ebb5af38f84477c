"""vgg_rl as a method: params, the four stages end to end, failed children, resume after a kill."""
import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch

from nascore.cli import main
from nascore.config import ParamsError
from nascore.methods import METHODS

from conftest import set_yaml


def test_paper_settings(project):
    m = METHODS["vgg_rl"].from_project(project, "paper")
    p = m.p
    assert (p.search.screening.epoch, p.search.screening.min_val_acc) == (20, 0.60)
    assert (p.generation.train.epochs, p.generation.train.batch_size, p.generation.train.lr) == (100, 64, 0.1)
    f = p.finetune.train
    assert (p.finetune.top_k, f.epochs, f.batch_size, f.milestones, f.gamma) == (10, 200, 128, [60, 120, 160], 0.2)
    # 0.1 -> 0.02 -> 0.004 -> 8e-4 (seed 001, Table 2)
    assert [round(f.lr * f.gamma ** i, 6) for i in range(4)] == [0.1, 0.02, 0.004, 0.0008]
    arch = m.architecture(m.grammar().tokens_of(p.space.start))
    convs = [c for op, c in arch.layers if op.startswith("conv")]
    assert convs == [64, 128, 256, 256, 512, 512, 512, 512]  # VGG-11, cfg A
    assert sum(op.startswith("max") for op, _ in arch.layers) == 5


@pytest.mark.parametrize("key,value,message", [
    ("space.start", [["conv3x3", 64]], r"vgg_rl.yaml: space.start: need 21 layers"),
    ("controller.update", "a2c", r"controller.update: got 'a2c'; allowed: reinforce, ppo"),
    ("search.screening.epoch", 30, r"search.screening.epoch: 30 > child.epochs 20"),
])
def test_bad_params_name_the_key(project, key, value, message):
    set_yaml(project / "params" / "vgg_rl.yaml", key, value)
    with pytest.raises(ParamsError, match=message):
        METHODS["vgg_rl"].from_project(project, "paper").params


def _cli(root, *args):
    assert main(["--root", str(root), *args]) == 0


def test_four_stages_end_to_end(cifar_project):
    root = cifar_project
    _cli(root, "search", "--method", "vgg_rl")
    _cli(root, "search", "--method", "vgg_rl", "--stage", "generation")
    _cli(root, "finetune", "--method", "vgg_rl", "--dataset", "cifar10")
    _cli(root, "evaluate", "--method", "vgg_rl", "--dataset", "cifar10")
    _cli(root, "report", "--method", "vgg_rl")
    m = METHODS["vgg_rl"].from_project(root)
    kids = json.loads((root / "runs" / "vgg_rl" / "search" / "children.json").read_text())["children"]
    assert len(kids) == m.p.search.iterations * m.p.search.children
    g = m.grammar()
    for k in kids:
        g.check(k["tokens"])  # only legal strings were sampled
        assert m.architecture(k["tokens"]).canonical_hash() == k["arch_hash"]
        assert k["status"] in ("ok", "screened") and 0.0 <= k["reward"] <= 1.0
    ranking = json.loads((root / "runs" / "vgg_rl" / "generation" / "ranking.json").read_text())["ranking"]
    accs = [r["val_acc"] for r in ranking]
    assert accs == sorted(accs, reverse=True) and [r["rank"] for r in ranking] == list(range(1, len(ranking) + 1))
    search = json.loads((root / "reports" / "metrics" / "vgg_rl-search.json").read_text())
    distinct = {k["arch_hash"] for k in kids}  # the pass rate counts distinct architectures (seed 001, Fig. 8)
    passed = {k["arch_hash"] for k in kids if k["status"] == "ok"}
    assert search["screening_pass_rate"] == round(len(passed) / len(distinct), 4)
    assert search["children_passed"] == sum(k["status"] == "ok" for k in kids)
    assert search["warm_start_prob"] >= m.p.controller.warm_start.target_prob
    c10 = json.loads((root / "reports" / "metrics" / "vgg_rl-cifar10.json").read_text())
    assert c10["rank"] == 1 and c10["arch_hash"] == ranking[0]["arch_hash"]
    assert len(c10["models"]) == min(m.p.finetune.top_k, len(ranking))
    report = (root / "reports" / "vgg_rl.md").read_text()
    assert "| paper: VGG-Lite (the paper's result) | 2.63 | 1.48 | 0.5 GPU-days | full CIFAR-10 |" in report
    assert "| paper: VGG-Lite (the paper's result) | 24.45 | 6.96 | 1.48 | full CIFAR-100 |" in report
    assert "| paper: Fig. 8 | not given | not given | 83% |" in report
    assert f"| ours: ranked first | {c10['top1_err']:.2f} |" in report and "ci profile" in report
    assert (root / "reports" / "figures" / "vgg_rl" / "best_architecture.png").stat().st_size > 1000
    assert not (root / "runs" / "vgg_rl" / "checkpoints" / "controller_search.pt").exists()


def test_diverging_children_are_recorded_as_failed_and_the_search_goes_on(cifar_project):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.vgg_rl.search.child.lr", 1.0e38)
    _cli(cifar_project, "search", "--method", "vgg_rl")
    kids = json.loads((cifar_project / "runs" / "vgg_rl" / "search" / "children.json").read_text())["children"]
    m = METHODS["vgg_rl"].from_project(cifar_project)
    assert len(kids) == m.p.search.iterations * m.p.search.children  # every iteration ran
    assert all(k["status"] == "failed" and "diverged" in k["reason"] for k in kids)
    assert all(k["reward"] == m.p.search.failed_reward for k in kids)
    metrics = json.loads((cifar_project / "reports" / "metrics" / "vgg_rl-search.json").read_text())
    assert metrics["status"] == "ok" and metrics["failed"] == len(kids)


def _search(root, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(root), "search", "--method", "vgg_rl"],
                          env=env, capture_output=True, text=True)


def test_killed_search_resumes_to_the_same_children_and_controller(cifar_project, tmp_path):
    profiles = cifar_project / "params" / "profiles.yaml"
    set_yaml(profiles, "ci.vgg_rl.search.child.epochs", 2)
    set_yaml(profiles, "ci.vgg_rl.search.child.checkpoint_every_steps", 3)
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)
    # the third network to reach step 3 is the first child of iteration 2 (2 children per iteration):
    # killed after one controller update, mid-child
    killed = _search(cifar_project, {"NASCORE_KILL_AT_STEP": "3@3"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = _search(cifar_project)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "controller search resumed at iteration 2 with 2 children done" in resumed.stderr
    assert "resumed from" in resumed.stderr  # the child itself resumed from its checkpoint
    straight = _search(twin)
    assert straight.returncode == 0, straight.stderr[-2000:]

    def read(root):
        d = json.loads((root / "runs" / "vgg_rl" / "search" / "children.json").read_text())
        return [(k["tokens"], k["reward"], k["status"]) for k in d["children"]], d["iterations"]

    assert read(cifar_project) == read(twin)
    a = torch.load(cifar_project / "runs" / "vgg_rl" / "search" / "controller.pt")["state_dict"]
    b = torch.load(twin / "runs" / "vgg_rl" / "search" / "controller.pt")["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_torchrun_population_parallel_search_equals_one_process(cifar_project, tmp_path):
    """Two gloo processes under torchrun: rank 0 samples, both train children, rank 0 updates."""
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "nascore.cli", "--root", str(cifar_project), "search", "--method", "vgg_rl"],
                          env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    single = _search(twin)
    assert single.returncode == 0, single.stderr[-2000:]

    def read(root):
        d = json.loads((root / "runs" / "vgg_rl" / "search" / "children.json").read_text())
        return [(k["child"], k["tokens"], k["reward"], k["status"]) for k in d["children"]], d["iterations"]

    assert read(cifar_project) == read(twin)


def test_killed_generation_resumes_to_the_same_ranking(cifar_project, tmp_path):
    profiles = cifar_project / "params" / "profiles.yaml"
    set_yaml(profiles, "ci.vgg_rl.controller.warm_start", None)  # random start: distinct children
    set_yaml(profiles, "ci.vgg_rl.generation.train.checkpoint_every_steps", 2)
    set_yaml(profiles, "ci.vgg_rl.generation.train.epochs", 2)
    _cli(cifar_project, "search", "--method", "vgg_rl")
    twin = tmp_path / "twin"
    shutil.copytree(cifar_project, twin)
    cmd = [sys.executable, "-m", "nascore.cli", "--root", str(cifar_project), "search", "--method", "vgg_rl",
           "--stage", "generation"]
    killed = subprocess.run(cmd, env={**os.environ, "NASCORE_KILL_AT_STEP": "2@2"}, capture_output=True, text=True)
    ranking = cifar_project / "runs" / "vgg_rl" / "generation" / "ranking.json"
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]  # in the second candidate
    assert not ranking.exists()
    assert subprocess.run(cmd, capture_output=True, text=True).returncode == 0
    _cli(twin, "search", "--method", "vgg_rl", "--stage", "generation")
    read = lambda r: [(x["arch_hash"], x["val_acc"], x["rank"]) for x in  # noqa: E731
                      json.loads((r / "runs" / "vgg_rl" / "generation" / "ranking.json").read_text())["ranking"]]
    assert read(cifar_project) == read(twin) and len(read(twin)) == 2
