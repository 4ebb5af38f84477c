"""A team MLflow server that dies mid-stage (issue 13, item 4): the stage fails within a minute with one
clear error naming the server, keeps its checkpoint, and once the server is back the rerun resumes and
ends its MLflow run FINISHED. The test starts and stops the server itself (loopback, sqlite backend)."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import set_yaml

pytestmark = pytest.mark.skipif(shutil.which("mlflow") is None and not os.path.exists(
    os.path.join(os.path.dirname(sys.executable), "mlflow")), reason="the mlflow server command is not installed")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _server(tmp_path, port: int) -> subprocess.Popen:
    log = open(tmp_path / f"server-{time.time_ns()}.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
                             "--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    _stop(proc)
    pytest.fail(f"mlflow server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """SIGKILL the server and everything it started (uvicorn, job runners): a server that dies."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _search(root, env):
    return subprocess.Popen([sys.executable, "-m", "nascore.cli", "--root", str(root), "search", "--method", "darts"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_server_that_dies_mid_stage_fails_it_clearly_and_the_rerun_resumes(cifar_project, tmp_path):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.darts.search.epochs", 2)  # 7 steps per epoch
    port = _free_port()
    uri = f"http://127.0.0.1:{port}"
    flag = tmp_path / "paused"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "NASCORE_PAUSE_AT_STEP": "4", "NASCORE_PAUSE_FILE": str(flag)}
    server = _server(tmp_path, port)
    try:
        search = _search(cifar_project, env)
        deadline = time.time() + 300
        while not flag.exists() and search.poll() is None and time.time() < deadline:
            time.sleep(0.1)
        assert flag.exists(), search.communicate()[1][-3000:]  # held after step 4's checkpoint, run open
        _stop(server)
        flag.unlink()
        started = time.time()
        _, err = search.communicate(timeout=120)
        assert time.time() - started < 60, err[-3000:]
        assert search.returncode == 3, err[-3000:]
        assert f"error: MLflow server {uri} stopped answering during darts run_search" in err
        assert "restart the server and rerun" in err and "Traceback" not in err
        assert (cifar_project / "runs" / "darts" / "checkpoints" / "search.pt").is_file()  # the work is kept
        assert not (cifar_project / "runs" / "darts" / "search" / "genotype.json").exists()

        server = _server(tmp_path, port)
        env.pop("NASCORE_PAUSE_AT_STEP")
        rerun = _search(cifar_project, env)
        _, err = rerun.communicate(timeout=600)
        assert rerun.returncode == 0, err[-3000:]
        assert "resumed from" in err and "epoch 1, step 4" in err
        assert (cifar_project / "runs" / "darts" / "search" / "genotype.json").is_file()

        from mlflow.tracking import MlflowClient
        client = MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("darts").experiment_id])
        assert [r.info.status for r in runs] == ["FINISHED"]  # the one run, resumed and ended
        assert [m.step for m in client.get_metric_history(runs[0].info.run_id, "val_err")] == [1, 2]
    finally:
        _stop(server)
