"""The report under a kill and with a dirty tracking store (issue 13, item 10): a killed report leaves no
truncated PNG and the rerun writes what an uninterrupted one does; runs whose process was killed are
shown KILLED, not RUNNING forever; a tag a run lacks is blank, not "nan"."""
import os
import subprocess
import sys

from nascore.cli import main


def _report(root, env_extra=None):
    return subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(root), "report", "--method", "darts"],
                          env={**os.environ, **(env_extra or {})}, capture_output=True, text=True)


def _snapshot(root):
    figures = root / "reports" / "figures" / "darts"
    return (root / "reports" / "darts.md").read_text(), {p.name: p.read_bytes() for p in sorted(figures.iterdir())}


def test_a_killed_report_leaves_whole_figures_and_the_rerun_writes_the_same(cifar_project):
    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0
    assert _report(cifar_project).returncode == 0
    md, figures = _snapshot(cifar_project)
    assert figures and all(b.startswith(b"\x89PNG") for b in figures.values())
    for p in (cifar_project / "reports" / "figures" / "darts").iterdir():
        p.unlink()  # the worst case: a first report, no earlier figures to fall back on

    killed = _report(cifar_project, {"NASCORE_KILL_AT": "report-figure@2"})  # the second figure, mid-write
    assert killed.returncode == -9, killed.stderr[-2000:]
    left = sorted(p.name for p in (cifar_project / "reports" / "figures" / "darts").iterdir())
    assert len([n for n in left if n.endswith(".png")]) == 1 and any(n.endswith(".tmp") for n in left)
    for name in left:
        if name.endswith(".png"):  # what is there under a figure's name is that whole figure
            assert (cifar_project / "reports" / "figures" / "darts" / name).read_bytes() == figures[name]

    rerun = _report(cifar_project)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert _snapshot(cifar_project) == (md, figures)  # no temp file left, every figure and the text as before


def test_report_ends_abandoned_runs_and_prints_no_nan(cifar_project):
    import socket

    import mlflow

    from nascore.tracking import configure

    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0
    configure()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()  # a PID that no longer runs: the process of a killed stage
    exp = mlflow.get_experiment_by_name("darts").experiment_id
    client = mlflow.MlflowClient()
    zombie = client.create_run(exp, run_name="darts/finetune-cifar10",
                               tags={"stage": "finetune", "nascore.host": socket.gethostname(),
                                     "nascore.pid": str(dead.pid)})
    alive = client.create_run(exp, run_name="darts/finetune-cifar100",  # another host's run may still be going
                              tags={"stage": "finetune", "nascore.host": "elsewhere", "nascore.pid": str(dead.pid)})
    assert _report(cifar_project).returncode == 0
    assert client.get_run(zombie.info.run_id).info.status == "KILLED"
    assert client.get_run(alive.info.run_id).info.status == "RUNNING"
    md = (cifar_project / "reports" / "darts.md").read_text()
    assert f"| darts/finetune-cifar10 (`{zombie.info.run_id[:8]}`) | finetune |  |  | KILLED |" in md
    assert "nan" not in md.split("## MLflow runs")[1]


def test_a_stage_that_starts_over_ends_its_killed_run(cifar_project):
    """A killed stage with nothing to resume from (its checkpoint gone, or from other code) starts over: its
    earlier run is marked KILLED, so the store does not keep a RUNNING run forever."""
    import mlflow

    killed = subprocess.run([sys.executable, "-m", "nascore.cli", "--root", str(cifar_project), "search",
                             "--method", "darts"], env={**os.environ, "NASCORE_KILL_AT_STEP": "4"},
                            capture_output=True, text=True)
    assert killed.returncode == -9
    (cifar_project / "runs" / "darts" / "checkpoints" / "search.pt").unlink()
    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0
    client = mlflow.MlflowClient()
    runs = client.search_runs([mlflow.get_experiment_by_name("darts").experiment_id])
    assert sorted(r.info.status for r in runs) == ["FINISHED", "KILLED"]
