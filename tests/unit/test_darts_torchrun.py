"""Fine-tuning and evaluation under torchrun (DDP, gloo, 2 processes on CPU): rank 0 writes the
outputs, and the distributed evaluation equals a single-process one of the same network."""
import json
import os
import subprocess
import sys

from nascore.cli import main

from conftest import set_yaml


def _torchrun(root, *args):
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           "-m", "nascore.cli", "--root", str(root), *args],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)


def test_ddp_finetune_and_sharded_evaluation(cifar_project):
    root = cifar_project
    set_yaml(root / "params" / "darts.yaml", "finetune.genotype", "darts_v2")  # no search needed
    set_yaml(root / "params" / "profiles.yaml", "ci.darts.finetune.cifar.epochs", 1)
    proc = _torchrun(root, "finetune", "--method", "darts", "--dataset", "cifar10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    status = json.loads((root / "runs" / "darts" / "finetune" / "cifar10" / "status.json").read_text())
    assert status["status"] == "ok" and status["processes"] == 2
    assert not (root / "runs" / "darts" / "checkpoints" / "finetune-cifar10.pt").exists()

    proc = _torchrun(root, "evaluate", "--method", "darts", "--dataset", "cifar10")
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics_path = root / "reports" / "metrics" / "darts-cifar10.json"
    sharded = json.loads(metrics_path.read_text())
    assert main(["--root", str(root), "evaluate", "--method", "darts", "--dataset", "cifar10"]) == 0
    single = json.loads(metrics_path.read_text())
    assert sharded["test_images"] == single["test_images"] == 100
    assert (sharded["top1_err"], sharded["top5_err"]) == (single["top1_err"], single["top5_err"])
