"""What predicts a GPU step's time and can be measured on a CPU: the ATen ops a step dispatches
(each at least one kernel launch and one trip through the dispatcher on a GPU) and the host
syncs among them (each stalls the CPU until the GPU catches up, and makes a step impossible to
capture as a CUDA graph).

    with OpCounter() as ops:
        strategy.step(batch)
    ops.total, ops.syncs, ops.ops.most_common(10)

The counter sees every op below autograd: forward, backward (autograd's own ops included) and
the optimizer; views count too (they are dispatched, though they launch no kernel).
"""
from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# ops that read device data on the host (or whose output shape depends on it)
HOST_SYNC_OPS = frozenset({
    "aten._local_scalar_dense",   # .item(), float(t), int(t), bool(t)
    "aten.nonzero", "aten.nonzero_static", "aten.masked_select", "aten.unique", "aten._unique2",
    "aten.unique_consecutive", "aten.is_nonzero", "aten.equal",
})


class OpCounter(TorchDispatchMode):
    """Counts the ATen ops dispatched while active, by name, and the host-syncing ones among them
    (HOST_SYNC_OPS, and indexing with a boolean mask, which runs nonzero inside)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()
        self.sync_ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None) -> Any:
        name = str(func.overloadpacket)
        self.ops[name] += 1
        if name in HOST_SYNC_OPS or (name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
                isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or ()))):
            self.sync_ops[name] += 1
        return func(*args, **(kwargs or {}))

    @property
    def total(self) -> int:
        return sum(self.ops.values())

    @property
    def syncs(self) -> int:
        return sum(self.sync_ops.values())
