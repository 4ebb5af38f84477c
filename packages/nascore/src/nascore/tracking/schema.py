"""One MLflow schema for every method, so that the compare view lines their runs up.

Every run carries the tags `method`, `stage`, `profile`, `seed` and `hardware` (plus `dataset`
where it has one, `genotype_hash` or `arch_hash` for what it trained or scored, and `dvc_exp` under
`dvc exp run`) and the params of its stage. Every evaluate run logs the headline metrics under the
same names (HEADLINE); a method's own numbers go under its own prefix (vgg_rl: `rank<k>_...`,
openset_rl: `openset_...`)."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

HEADLINE = ("test_top1_err", "test_top5_err", "params_m", "macs_m", "search_cost_s", "train_cost_s", "train_epochs")
TAGS = ("method", "stage", "profile", "seed", "hardware")


_SCOPE: ContextVar[dict[str, str]] = ContextVar("nascore_run_tags", default={})


@contextmanager
def tagged(**tags: str) -> Iterator[None]:
    """Every run started inside carries `tags` as well, whichever method or stage starts it: how the
    variance stage marks its runs (`variance=search0-training1`) so they never pass for headline ones."""
    token = _SCOPE.set({**_SCOPE.get(), **tags})
    try:
        yield
    finally:
        _SCOPE.reset(token)


def default_tags(method: str) -> dict[str, str]:
    """What start_run puts on every run: the method, the hardware, the DVC experiment if any, and the
    tags of the enclosing `tagged` scopes."""
    from nascore.runtime import hardware

    tags = {"method": method, "hardware": hardware()}
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc_exp"] = os.environ["DVC_EXP_NAME"]
    return {**tags, **_SCOPE.get()}


def headline(*, top1_err: float, top5_err: float | None, params_m: float, macs_m: float | None,
             search_cost_s: float | None, train_cost_s: float | None, train_epochs: int) -> dict[str, float]:
    """An evaluate run's headline metrics under the schema's names (a number not measured is left out)."""
    values = {"test_top1_err": top1_err, "test_top5_err": top5_err, "params_m": params_m, "macs_m": macs_m,
              "search_cost_s": search_cost_s, "train_cost_s": train_cost_s, "train_epochs": train_epochs}
    return {k: float(v) for k, v in values.items() if v is not None}


def check_run(metrics: dict[str, Any], tags: dict[str, str], *, required: tuple[str, ...] = HEADLINE) -> list[str]:
    """What an evaluate run lacks of the schema (empty: it complies)."""
    return [f"metric {k}" for k in required if k not in metrics] + [f"tag {k}" for k in (*TAGS, "dataset")
                                                                   if k not in tags]
