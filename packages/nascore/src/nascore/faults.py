"""Fault injection for the kill tests: `NASCORE_KILL_AT=<point>` sends SIGKILL to this process when it
reaches `maybe_kill("<point>")`, as a crash or an OOM kill would (`<point>@k`: the k-th time). Points:
`report-figure` (a figure written under its temp name, not yet renamed), `prepare-manifest` (the prepared
tensors written, the manifest not yet) and `prepare-swap` (the old prepared folder moved aside, the new
one not yet in its place); training steps have their own variables (nascore.train.loop): NASCORE_KILL_AT_STEP, and
NASCORE_PAUSE_AT_STEP, which holds the run at a step while the file NASCORE_PAUSE_FILE exists (so a test
can break something under it, e.g. stop the tracking server, at a known point)."""
from __future__ import annotations

import os
import signal
import time
from pathlib import Path

_HITS: dict[str, int] = {}


def maybe_kill(point: str, variable: str = "NASCORE_KILL_AT") -> None:
    """SIGKILL this process if `variable` names `point` (and this is the k-th hit it asks for)."""
    at = os.environ.get(variable)
    if not at:
        return
    name, _, nth = at.partition("@")
    if name != point:
        return
    _HITS[point] = _HITS.get(point, 0) + 1
    if _HITS[point] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


def maybe_pause(point: str, variable: str) -> None:
    """Write NASCORE_PAUSE_FILE and wait while it exists, if `variable` names `point`."""
    if os.environ.get(variable) != point:
        return
    flag = Path(os.environ["NASCORE_PAUSE_FILE"])
    flag.write_text(f"{os.getpid()}\n")
    while flag.exists():
        time.sleep(0.05)
