"""Params dependencies are narrowed to what a stage reads: `dvc exp run -S` of one method's key (or
of a run key that does not change results) reruns only the stages that read it."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.integration


def _changed_params(root: Path) -> set[str]:
    """Stages whose params changed against dvc.lock (`dvc status`; missing code, data and outputs, which
    this copy leaves out, are ignored)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    proc = subprocess.run([sys.executable, "-m", "dvc", "status", "--json"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {stage for stage, changes in json.loads(proc.stdout or "{}").items()  # params: "changed deps" by key
            if any(isinstance(c, dict) and any(path.startswith("params/") and isinstance(keys, dict)
                                               for path, keys in c.get("changed deps", {}).items()) for c in changes)}


def _set(path: Path, dotted: str, value) -> None:
    data = yaml.safe_load(path.read_text())
    node = data
    *parents, leaf = dotted.split(".")
    for k in parents:
        node = node[k]
    node[leaf] = value
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def test_one_methods_override_reruns_only_its_stages(tmp_path):
    root = tmp_path / "main"
    shutil.copytree(REPO / "params", root / "params")
    shutil.copytree(REPO / "pipelines", root / "pipelines")
    shutil.copytree(REPO / ".dvc", root / ".dvc", ignore=shutil.ignore_patterns("cache", "tmp", "config.local"))
    for f in ("dvc.yaml", "dvc.lock", "methods.yaml"):
        shutil.copy2(REPO / f, root / f)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    assert not _changed_params(root), "dvc.lock is out of date with params/: run `dvc repro` and commit the lock"
    _set(root / "params" / "profiles.yaml", "quick.openset_rl.search.iterations", 10)
    changed = _changed_params(root)
    assert changed and all("openset" in s for s in changed), changed
    _set(root / "params" / "run.yaml", "run.tracking_uri", "http://127.0.0.1:5999")  # where results go, not what
    assert _changed_params(root) == changed
    _set(root / "params" / "profiles.yaml", "quick.darts.search.epochs", 3)
    darts = _changed_params(root) - changed
    assert {"search@darts", "finetune@darts-cifar10"} <= darts and all(s.split("@")[1].startswith("darts") for s in darts), darts


def test_code_hashes_leave_out_compiled_python():
    """dvc.lock hashes the package's folders: compiled files (whoever ran the code, with whichever Python)
    must not count, or every checkout's lock differs and a fresh clone sees every code dependency changed."""
    from dvc.repo import Repo

    ignore = Repo(str(REPO)).dvcignore
    pkg = REPO / "packages" / "nascore" / "src" / "nascore"
    assert ignore.is_ignored_file(str(pkg / "data" / "__pycache__" / "loader.cpython-311.pyc"))
    assert ignore.is_ignored_file(str(pkg / "stray.pyc"))
    assert not ignore.is_ignored_file(str(pkg / "data" / "loader.py"))
