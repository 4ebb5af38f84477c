"""Where stages read and write, relative to the project root (mirrors dvc.yaml)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Layout:
    root: Path

    def prepared(self, dataset: str) -> Path:
        return self.root / "data" / "prepared" / dataset

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

    def report(self, method: str) -> Path:
        return self.root / "reports" / f"{method}.md"

    def figures(self) -> Path:
        return self.root / "reports" / "figures"


def write_json(path: Path, data: Any) -> None:
    """Atomic JSON write: the file is whole or absent."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(path.read_text())
