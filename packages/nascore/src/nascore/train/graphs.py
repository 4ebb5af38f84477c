"""Training steps replayed as CUDA graphs (`run.cuda_graphs`).

A search or training step at DARTS sizes is bound by kernel launches, not by the GPU: tens of
thousands of small kernels, each with its Python and dispatcher overhead. Captured once as a CUDA
graph, a step is replayed with one launch. What capture needs, and how it is met here:

- static inputs: `GraphedStep` copies every batch into buffers the graph was captured on; a batch
  of another shape (the last partial batch of an epoch) runs eagerly, never a recapture;
- no host syncs inside the step: gradient clipping and metric sums stay on the device, and the
  learning rate is a tensor (`sgd_step`), so the cosine schedule changes it without recapture;
- randomness (drop-path) from PyTorch's default CUDA generator, which graphs replay with fresh
  offsets; augmentation runs before the copy into the static inputs;
- the step is a function of its inputs; Python branches taken at capture are fixed, so a step with
  another branch (drop-path off / on) is captured under its own `key`.

On a CPU (or with `enabled=False`) a GraphedStep simply calls the function, which is how the
captured code path is tested without a GPU.
"""
from __future__ import annotations

import warnings
from typing import Any, Callable, Hashable, Sequence

import torch


def graphs_wanted(setting: str, device: torch.device) -> bool:
    """run.cuda_graphs: `on` (CUDA required), `off`, or `auto` (= on where the device is CUDA)."""
    if setting == "on" and device.type != "cuda":
        raise RuntimeError(f"run.cuda_graphs is 'on' but the device is {device.type}; CUDA graphs need a CUDA "
                           "device (use 'auto' to capture only there)")
    return setting == "on" or (setting == "auto" and device.type == "cuda")


class GraphedStep:
    """Calls `fn(*inputs)` eagerly for `warmup` calls (on a side stream, so libraries finish their
    lazy setup), then captures it as a CUDA graph on static copies of the inputs and replays it.
    Returns what `fn` returned: after a replay, the graph's static output tensors, overwritten by
    the next replay (read them before calling again).

    The largest batch seen is the one captured: a smaller one (the last partial batch of an epoch)
    runs eagerly, a larger one (the first full batch after a resume that began on a partial one)
    replaces the graph. One graph is kept per step: capturing another `key` drops the previous.
    `pool`: a memory pool id shared with other graphs whose outputs are read before they replay
    (e.g. `torch.cuda.MemPool().id`, kept alive by its owner so graphs can be captured into it again);
    None: a private pool per graph."""

    def __init__(self, fn: Callable[..., Any], *, warmup: int = 2, enabled: bool = True,
                 pool: Any = None, strict: bool = True) -> None:
        self.fn, self.warmup, self.enabled, self.strict, self.pool = fn, warmup, enabled, strict, pool
        self.signature: tuple | None = None
        self.graphs: dict[Hashable, tuple[torch.cuda.CUDAGraph, list[torch.Tensor], Any]] = {}
        self.warm: dict[Hashable, int] = {}
        self.captures = 0

    def reset(self) -> None:
        """Forget the captured graphs (e.g. after optimizer state was replaced by load_state_dict)."""
        self.graphs.clear()
        self.warm.clear()
        self.signature = None

    def __call__(self, *inputs: torch.Tensor, key: Hashable = None) -> Any:
        if not self.enabled or not inputs[0].is_cuda:
            return self.fn(*inputs)
        signature = tuple((t.shape, t.dtype, t.stride()) for t in inputs)
        if signature != self.signature:
            if self.signature is not None and inputs[0].shape[0] <= self.signature[0][0][0]:
                return self.fn(*inputs)  # a partial batch: eager, no recapture
            self.reset()
            self.signature = signature
        entry = self.graphs.get(key)
        if entry is None:
            if self.warm.get(key, 0) < self.warmup:
                self.warm[key] = self.warm.get(key, 0) + 1
                side = torch.cuda.Stream()
                side.wait_stream(torch.cuda.current_stream())
                with torch.cuda.stream(side):
                    out = self.fn(*inputs)
                torch.cuda.current_stream().wait_stream(side)
                return out
            self.graphs.clear()  # the previous key's graph (drop-path off) is not replayed again
            try:
                entry = self.graphs[key] = self._capture(inputs)
            except RuntimeError as e:  # e.g. an op that syncs with the host: the step cannot be captured
                if self.strict:
                    raise RuntimeError(f"capturing the step as a CUDA graph failed: {e}\n(run.cuda_graphs: "
                                       "auto falls back to eager steps; off never captures)") from e
                warnings.warn(f"CUDA-graph capture failed, running eagerly from now on: {e}", stacklevel=2)
                self.enabled = False
                return self.fn(*inputs)
        graph, static, out = entry
        for s, t in zip(static, inputs):
            s.copy_(t)
        graph.replay()  # capturing did not run the step: the first replay does
        return out

    def _capture(self, inputs: Sequence[torch.Tensor]):
        static = [torch.empty_strided(t.shape, t.stride(), dtype=t.dtype, device=t.device).copy_(t) for t in inputs]
        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn(*static)
        self.captures += 1
        return graph, static, out


@torch.no_grad()
def sgd_step(params: list[torch.Tensor], grads: list[torch.Tensor], optimizer: torch.optim.SGD,
             lr: torch.Tensor) -> None:
    """optimizer.step() for a plain torch.optim.SGD (momentum, weight decay, no dampening or Nesterov)
    with the learning rate read from the 0-d tensor `lr`: the same foreach updates as torch's, on
    the optimizer's own momentum buffers, without turning lr into a host number."""
    group = optimizer.param_groups[0]
    if group["dampening"] or group["nesterov"] or group["maximize"] or len(optimizer.param_groups) != 1:
        raise ValueError("sgd_step covers SGD with one param group, no dampening, Nesterov or maximize")
    wd, momentum = group["weight_decay"], group["momentum"]
    d = torch._foreach_add(grads, params, alpha=wd) if wd else list(grads)
    if momentum:
        state = optimizer.state
        bufs = [state[p].get("momentum_buffer") for p in params]
        old = [i for i, b in enumerate(bufs) if b is not None]
        if old:
            torch._foreach_mul_([bufs[i] for i in old], momentum)
            torch._foreach_add_([bufs[i] for i in old], [d[i] for i in old])
        for i, p in enumerate(params):  # a parameter's first step: buffer = gradient (torch.optim.SGD's rule)
            if bufs[i] is None:
                bufs[i] = state[p]["momentum_buffer"] = d[i].detach().clone()
        d = bufs
    torch._foreach_sub_(params, torch._foreach_mul(d, lr))


def clipped_sgd_step(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None],
                     optimizer: torch.optim.SGD, lr: torch.Tensor, max_norm: float) -> None:
    """The weight update of a capturable step: gradients (None: unused) assigned, their global norm
    clipped on the device (clip_grad_norm_, foreach), then `sgd_step`."""
    used = [(p, g) for p, g in zip(params, grads) if g is not None]
    for p, g in used:
        p.grad = g
    params, grads = [p for p, _ in used], [g for _, g in used]
    torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
    sgd_step(params, grads, optimizer, lr)
