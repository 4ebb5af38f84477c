"""One run at a time per stage output: a second run of a stage outside DVC (DVC's own lock covers
`dvc repro`) fails at once, naming the process that holds it. The lock is an OS file lock (flock),
so the kernel drops it when its holder dies: a killed run never leaves a stale lock behind."""
from __future__ import annotations

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


class StageBusy(RuntimeError):
    """Another process is running the same stage on the same outputs."""


def alive(pid: int) -> bool:
    """Whether process `pid` runs on this machine (a reused id counts as alive until that process ends)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_temp(folder: Path) -> None:
    """Remove from `folder` the temp files (`.<name>.<pid>.tmp`, layout.atomic_path) of writers that died
    before their rename; a live writer's are left alone."""
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        pid = tmp.name[:-len(".tmp")].rsplit(".", 1)[-1]
        if not (pid.isdigit() and alive(int(pid))):
            tmp.unlink(missing_ok=True)


_HELD: set[Path] = set()  # locks this process holds: a stage body may call a stage on the same outputs


@contextmanager
def hold(path: Path, what: str) -> Iterator[None]:
    """Hold the lock file `path` while the body runs; StageBusy (naming the holder's PID) if another
    process holds it."""
    path = path.resolve()
    if path in _HELD:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StageBusy(f"{what} is already running in process {holder} (lock {path}): wait for it to "
                            f"finish or stop it (kill {holder}), then rerun") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        _HELD.add(path)
        try:
            yield
        finally:
            _HELD.discard(path)
    finally:
        os.close(fd)  # releases the lock
