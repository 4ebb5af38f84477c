"""Where stages read and write, relative to the project root (mirrors dvc.yaml)."""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Layout:
    root: Path
    data_root: Path | None = None  # where data/prepared is, when not under root (a seed run's own root)

    def prepared(self, dataset: str) -> Path:
        """A dataset's prepared tensors and manifest: what prepare writes and every stage reads (the one
        place this path is named; dvc.yaml's prepare outs say the same)."""
        return (self.data_root or self.root) / "data" / "prepared" / dataset

    def search_dir(self, method: str, stage: str = "search") -> Path:
        """The search's output (what finetune reads); earlier stages of a multi-stage search
        (e.g. stacnas' search_stage1) beside it."""
        return self.root / "runs" / method / stage

    def finetune_dir(self, method: str, dataset: str) -> Path:
        return self.root / "runs" / method / "finetune" / dataset

    def checkpoints(self, method: str) -> Path:
        return self.root / "runs" / method / "checkpoints"

    def metrics(self, name: str) -> Path:
        return self.root / "reports" / "metrics" / f"{name}.json"

    def plot(self, name: str) -> Path:
        """A curve DVC plots (`dvc plots show` / `diff`): reports/plots/<name>.tsv."""
        return self.root / "reports" / "plots" / f"{name}.tsv"

    def report(self, method: str) -> Path:
        return self.root / "reports" / f"{method}.md"

    def figures(self) -> Path:
        return self.root / "reports" / "figures"


def temp_name(path: Path) -> Path:
    """Where `path` is written before it is renamed into place: hidden, beside it (one file system, so the
    rename is atomic), and named by this process, so two writers never share a temp file."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """The one way nascore writes a file: yields a temp path to write, then renames it onto `path`. A
    killed or failing writer leaves `path` whole (old or new) or absent, never truncated; a failing
    one leaves no temp file either. A killed one's is removed by the next stage writing to that folder
    (`lock.sweep_temp`, under the stage's lock) and is invisible to DVC meanwhile (.dvcignore)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: Path, text: str) -> Path:
    """An atomic text write (see `atomic_path`)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def write_json(path: Path, data: Any) -> None:
    """An atomic JSON write: the file is whole or absent."""
    write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def write_tsv(path: Path, rows: list[dict[str, Any]], columns: list[str]) -> None:
    """An atomic TSV write, one row per dict (a missing or None field is empty): what `dvc plots` reads."""
    def cell(v: Any) -> str:
        return "" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

    write_text(path, "\n".join(["\t".join(columns),
                                *("\t".join(cell(r.get(c)) for c in columns) for r in rows)]) + "\n")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())


def save_atomically(obj: Any, path: Path) -> None:
    """torch.save that leaves the file whole or absent (see `atomic_path`)."""
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


class UnsafeFile(RuntimeError):
    """A checkpoint or model file that holds more than tensors and plain data (code to run on load)."""


def load_checkpoint(path: Path, map_location: Any = "cpu") -> Any:
    """torch.load with weights_only=True: tensors, numbers, strings, and lists / dicts / tuples of them,
    which is all nascore writes. Unpickling anything else could run code from the file (a crafted
    checkpoint under runs/, or a model.pt pulled from a compromised DVC remote), so it is refused
    before any of it runs."""
    import pickle
    import re

    import torch

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        if found is None:  # not a refused global: a truncated or corrupt file
            raise UnsafeFile(f"{path} is not a readable checkpoint (corrupt or truncated: "
                             f"{str(e).strip().splitlines()[0][:200]}); delete it (a checkpoint: the stage starts "
                             "over) or restore it from a trusted copy") from None
        raise UnsafeFile(f"{path} holds more than tensors and plain data ({found.group(1)}), so it was not loaded "
                         f"(nothing in it ran): it is not a file nascore wrote, or it was altered. Delete it (a "
                         f"checkpoint: the stage starts over) or restore it from a trusted copy") from None
