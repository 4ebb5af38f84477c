"""Shared fixtures: an isolated project (params copied, private MLflow store) and small
datasets that the tests write themselves in the real on-disk formats (never results)."""
from __future__ import annotations

import io
import pickle
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import yaml

from nascore.runtime import pin_cpu_isa

REPO = Path(__file__).resolve().parents[1]
# The stages pin the CPU kernels (params/run.yaml run.cpu_isa) before computing; tests that run a stage
# in this process compute under the same pin, set here before any test's first tensor operation.
pin_cpu_isa(yaml.safe_load((REPO / "params" / "run.yaml").read_text())["run"].get("cpu_isa", "native"))


def write_cifar_pickles(folder: Path, name: str = "cifar10", train_per_class: int = 4,
                        test_per_class: int = 2, seed: int = 0) -> Path:
    """A CIFAR-10/100 python-pickle folder with random pixels, in torchvision's format."""
    rng = np.random.default_rng(seed)
    n_classes = 10 if name == "cifar10" else 100
    key = "labels" if name == "cifar10" else "fine_labels"

    def batch(per_class: int) -> dict:
        labels = [c for _ in range(per_class) for c in range(n_classes)]
        return {"data": rng.integers(0, 256, (len(labels), 3072), dtype=np.uint8), key: labels}

    folder.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        files = {"data_batch_1": batch(train_per_class), "test_batch": batch(test_per_class),
                 "batches.meta": {"label_names": [f"class{i}" for i in range(10)]}}
        files.update({f"data_batch_{i}": batch(0) for i in range(2, 6)})
    else:
        files = {"train": batch(train_per_class), "test": batch(test_per_class),
                 "meta": {"fine_label_names": [f"class{i}" for i in range(100)]}}
    for fname, d in files.items():
        with open(folder / fname, "wb") as f:
            pickle.dump(d, f)
    return folder


def write_image_folder(root: Path, classes=("a", "b", "c"), per_class: int = 3, size: int = 32,
                       test_split: str = "test", suffix: str = ".png") -> Path:
    """An ImageFolder tree with random images."""
    from PIL import Image

    rng = np.random.default_rng(1)
    for split in ("train", test_split):
        for c in classes:
            d = root / split / c
            d.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(d / f"{i:04d}{suffix}")
    return root


def tar_folder(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz" if archive.name.endswith(".gz") else "w") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


@pytest.fixture
def project(tmp_path, monkeypatch) -> Path:
    """A project root with the repo's params (ci profile) and its own MLflow store."""
    root = tmp_path / "proj"
    root.mkdir()
    shutil.copytree(REPO / "params", root / "params")
    run = (root / "params" / "run.yaml").read_text()
    (root / "params" / "run.yaml").write_text(
        "\n".join("profile: ci" if line.startswith("profile:") else line for line in run.splitlines()) + "\n")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")
    monkeypatch.setenv("NASCORE_PROGRESS", "0")
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    return root


@pytest.fixture
def cifar_project(project) -> Path:
    """`project` with a small CIFAR-10 pickle set in data/raw, prepared."""
    from nascore.cli import main

    write_cifar_pickles(project / "data" / "raw" / "cifar-10-batches-py", train_per_class=20,
                        test_per_class=10)
    assert main(["--root", str(project), "prepare", "--dataset", "cifar10"]) == 0
    return project


def set_yaml(path: Path, dotted: str, value) -> None:
    """Set one key in a YAML file (for tests that change params)."""
    import yaml

    data = yaml.safe_load(path.read_text())
    node = data
    *parents, last = dotted.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


__all__ = ["write_cifar_pickles", "write_image_folder", "tar_folder", "set_yaml", "REPO", "io"]


@pytest.fixture
def no_tf32(monkeypatch):
    """fp32 convs and matmuls in full precision on a GPU (TF32 off), so two ways of computing the same
    thing agree to float32 tolerance; no effect on a CPU."""
    import torch

    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)
    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    yield
    torch.set_float32_matmul_precision(before)
