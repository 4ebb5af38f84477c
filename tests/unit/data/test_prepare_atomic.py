"""prepare swaps its folder in whole (issue 13, item 6): killed at the worst moments it leaves the
complete old folder (or, between the two renames, one that the next reader or prepare puts back),
and a rerun ends byte-identical to an uninterrupted run, with no temp folder left and normal modes."""
import os
import shutil
import signal
import stat
import subprocess
import sys

import pytest

from nascore.data.prepare import load_prepared, recover
from nascore.layout import Layout

from conftest import set_yaml, write_cifar_pickles


def _prepare(root, env_extra=None):
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(root), "prepare", "--dataset", "cifar10"],
                          env=env, capture_output=True, text=True, umask=0o022)


def _files(folder):
    return {p.name: p.read_bytes() for p in folder.iterdir()}


@pytest.mark.parametrize("point", ["prepare-manifest", "prepare-swap"])
def test_a_killed_prepare_leaves_a_whole_folder_and_reruns_clean(cifar_project, tmp_path, point):
    target = Layout(cifar_project).prepared("cifar10")
    old = _files(target)  # 20 train images per class; the run killed below writes 5
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.data.train_per_class", 5)
    twin = tmp_path / "twin"  # the same raw data and params, never prepared
    write_cifar_pickles(twin / "data" / "raw" / "cifar-10-batches-py", train_per_class=20, test_per_class=10)
    shutil.copytree(cifar_project / "params", twin / "params")

    killed = _prepare(cifar_project, {"NASCORE_KILL_AT": point})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    leftovers = sorted(p.name.split("-")[0] for p in target.parent.iterdir()
                       if p.name not in ("cifar10", ".cifar10.lock"))  # the lock of prepare (nascore.lock)
    if point == "prepare-swap":  # between the renames: the target is absent, the old folder aside
        assert not target.exists() and leftovers == [".cifar10.old", ".cifar10.tmp"]
    else:  # tensors written, no manifest yet: the target is the old folder, untouched
        assert _files(target) == old and leftovers == [".cifar10.tmp"]
    tensors, manifest = load_prepared(target)  # a reader puts a moved-aside folder back
    assert _files(target) == old and manifest["counts"]["train"]["class0"] == 20 and len(tensors["train_y"]) == 200

    rerun = _prepare(cifar_project)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _prepare(twin).returncode == 0
    assert _files(target) == _files(Layout(twin).prepared("cifar10"))  # same files, same bytes
    assert load_prepared(target)[1]["counts"]["train"]["class0"] == 5
    assert sorted(p.name for p in target.parent.iterdir()) == [".cifar10.lock", "cifar10"]  # no .tmp-* / .old-*
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    assert {stat.S_IMODE(p.stat().st_mode) for p in target.iterdir()} == {0o644}


def test_recover_restores_or_removes_only_what_dead_prepares_left(tmp_path):
    prepared = tmp_path / "data" / "prepared"
    done = subprocess.Popen(["true"])
    done.wait()
    live = subprocess.Popen(["sleep", "60"])
    try:
        for name in (f".cifar10.old-{done.pid}", f".cifar10.tmp-{done.pid}", f".cifar10.tmp-{live.pid}",
                     f".cifar100.tmp-{done.pid}"):
            (prepared / name).mkdir(parents=True)
            (prepared / name / "manifest.json").write_text(name)
        recover(prepared / "cifar10")
        assert (prepared / "cifar10" / "manifest.json").read_text() == f".cifar10.old-{done.pid}"
        assert sorted(p.name for p in prepared.iterdir()) == sorted(
            ["cifar10", f".cifar10.tmp-{live.pid}", f".cifar100.tmp-{done.pid}"])  # a live prepare, another dataset
        (prepared / f".cifar10.old-{done.pid}").mkdir()
        recover(prepared / "cifar10")  # the target exists: a stale old folder is deleted, not restored
        assert (prepared / "cifar10" / "manifest.json").read_text() == f".cifar10.old-{done.pid}"
        assert not (prepared / f".cifar10.old-{done.pid}").exists()
    finally:
        live.kill()
        live.wait()


def test_prepare_writes_where_every_stage_reads(cifar_project):
    """data/prepared/<dataset> is named once, by Layout (what dvc.yaml declares); no params key moves it."""
    from nascore.config import ParamsError
    from nascore.methods import METHODS
    from nascore.params import load_params

    assert load_prepared(Layout(cifar_project).prepared("cifar10"))[1]["status"] == "ok"
    set_yaml(cifar_project / "params" / "data.yaml", "data.prepared_dir", "elsewhere")
    with pytest.raises(ParamsError, match="prepared_dir: unknown key"):
        load_params(cifar_project, None, None, methods=METHODS.names())
