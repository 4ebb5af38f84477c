"""Two runs of one stage outside DVC (issue 13, item 5): the second fails at once naming the holder's
PID and writes nothing; a killed holder leaves no stale lock."""
import os
import signal
import subprocess
import sys
import time

import pytest

from nascore.cli import main
from nascore.lock import StageBusy, hold

HOLD = """
import sys, time
from pathlib import Path
from nascore.lock import hold
with hold(Path(sys.argv[1]), "test"):
    print("held", flush=True)
    time.sleep(600)
"""


def _holder(path):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_with_the_pid_and_a_killed_holder_frees_the_lock(tmp_path):
    path = tmp_path / "locks" / "x.lock"
    proc = _holder(path)
    try:
        with pytest.raises(StageBusy, match=rf"already running in process {proc.pid} \(lock .*x\.lock\): wait .*kill {proc.pid}"):
            with hold(path, "the stage"):
                pytest.fail("the body ran while another process held the lock")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with hold(path, "the stage"):  # the kernel dropped the dead holder's lock
        assert path.read_text().strip() == str(os.getpid())
        with hold(path, "the stage"):  # re-entered by the same process (a stage calling a stage): no deadlock
            pass


def test_a_second_run_of_a_stage_fails_at_once_and_writes_nothing(cifar_project, capsys):
    lock = cifar_project / "runs" / "darts" / "locks" / "runs_darts_search_status.json.lock"
    proc = _holder(lock)
    try:
        started = time.perf_counter()
        assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 3
        assert time.perf_counter() - started < 30  # at once, not after a search
        err = capsys.readouterr().err
        assert f"the darts stage writing runs/darts/search/status.json is already running in process {proc.pid}" in err
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (cifar_project / "runs" / "darts" / "search").exists()
    assert not (cifar_project / "reports" / "metrics" / "darts-search.json").exists()
    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0  # the lock died with it
