"""Gradient-based architecture search (DARTS, Liu et al. 2019, Alg. 1).

Lifecycle (NASLib's contract): build with a supernet, `new_epoch`, `step(batch)`,
`genotype()`, `state_dict()`. The architecture loss can take an extra regulariser
(e.g. an entropy term) without touching the step code.

Bi-level (DARTS): alpha steps on a validation batch, weights on a training batch; the step
takes `((x_train, y_train), (x_val, y_val))`. One-level (StacNAS, seed 004 claims 6-7): one
loss on one training batch `(x, y)`, whose backward pass feeds both optimisers.

`channels_last=True` puts the supernet's conv weights and every input batch in channels_last
(NHWC) memory format, the layout GPU convolutions prefer; the updates are the same.

`cuda_graphs=True` (first-order and one-level steps) replays the step as two CUDA graphs on a
GPU (nascore.train.graphs): the architecture gradients, then the weight update with gradient
clipping and SGD inside the graph (learning rate as a tensor); Adam's update of the few alpha
tensors runs between them. The second-order step stays eager (its virtual steps run the supernet
under functional_call with other weights and copies of the BN buffers). The captured functions are
plain PyTorch, so on a CPU they run eagerly and give the same updates as the default step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from nascore.evaluate.metrics import topk_errors
from nascore.genotype import Genotype
from nascore.registry import Registry
from nascore.runtime import autocast_dtype, check_layout, use_channels_last
from nascore.strategies.regularisers import edge_entropy
from nascore.train import Hook, Trainer
from nascore.train.graphs import GraphedStep, clipped_sgd_step, graphs_wanted
from nascore.train.tasks import step_metrics

STRATEGIES: Registry = Registry("search strategy")

Batch = tuple[torch.Tensor, torch.Tensor]
Regulariser = Callable[[nn.Module], torch.Tensor]


@STRATEGIES.register("darts")
class DifferentiableSearch:
    """Alternating alpha / weight updates; order 1 (xi = 0) or 2 (unrolled, eq. 7-8), or
    simultaneous updates from one training batch (`one_level=True`)."""

    def __init__(self, model: nn.Module, *, lr: float, lr_min: float, momentum: float,
                 weight_decay: float, grad_clip: float, epochs: int, arch_lr: float,
                 arch_betas: tuple[float, float], arch_weight_decay: float, order: int = 1,
                 arch_regulariser: Regulariser | None = None, hvp_eps: float = 0.01,
                 autocast_dtype: torch.dtype | None = None, one_level: bool = False,
                 channels_last: bool = False, cuda_graphs: bool = False, graphs_strict: bool = True) -> None:
        from timm.scheduler import CosineLRScheduler

        if order not in (1, 2):
            raise ValueError(f"order must be 1 or 2, got {order}")
        if one_level and order != 1:
            raise ValueError("one-level optimisation has no unrolled (second-order) step; use order 1")
        self.model, self.order, self.grad_clip, self.one_level = model, order, grad_clip, one_level
        self.momentum, self.weight_decay, self.hvp_eps = momentum, weight_decay, hvp_eps
        self.arch_regulariser = arch_regulariser
        check_layout(model, autocast_dtype, channels_last)
        self.autocast_dtype, self.channels_last = autocast_dtype, channels_last
        if channels_last:  # in place: the optimisers below hold the same Parameter objects
            model.to(memory_format=torch.channels_last)
        # the supernet's parameter sets are fixed for its search: listed once, not in every step
        self.weights, self.alphas = model.weight_parameters(), model.arch_parameters()
        # foreach: one kernel per update over all tensors (the CUDA default; on a CPU the same arithmetic)
        self.w_optim = torch.optim.SGD(self.weights, lr, momentum=momentum,
                                       weight_decay=weight_decay, foreach=True)
        self.a_optim = torch.optim.Adam(self.alphas, lr=arch_lr, betas=tuple(arch_betas),
                                        weight_decay=arch_weight_decay, foreach=True)
        # cosine from lr to lr_min over the search epochs, stepped per epoch (DARTS train_search.py)
        self.scheduler = CosineLRScheduler(self.w_optim, t_initial=epochs, lr_min=lr_min,
                                           warmup_t=0, t_in_epochs=True)
        # the graph-capturable step (cuda_graphs): the learning rate as a tensor (the weights' dtype: the
        # fused foreach kernels take a scalar tensor of their own dtype), two graphs sharing one memory
        # pool: each one's outputs are read (alpha gradients by Adam, metrics by the trainer) before the
        # other replays; the pool object lives as long as the strategy, so graphs can be captured again
        self.graphed = cuda_graphs and order == 1
        if self.graphed:
            device = self.weights[0].device
            self._lr = torch.tensor(float(lr), dtype=self.weights[0].dtype, device=device)
            self._pool = torch.cuda.MemPool() if device.type == "cuda" else None
            pool = self._pool.id if self._pool is not None else None
            self._alpha_graph = GraphedStep(self._alpha_grads, pool=pool, strict=graphs_strict)
            self._weight_graph = GraphedStep(self._one_level_update if one_level else self._weight_update,
                                             pool=pool, strict=graphs_strict)

    # -- lifecycle -------------------------------------------------------------------
    def new_epoch(self, epoch: int) -> None:
        self.scheduler.step(epoch)
        if self.graphed:
            self._lr.fill_(self.lr)
        self.model.train()

    @property
    def lr(self) -> float:
        return self.w_optim.param_groups[0]["lr"]

    def step(self, batch: tuple[Batch, Batch] | Batch) -> dict[str, torch.Tensor]:
        """Bi-level: one architecture step on the val batch, then one weight step on the train
        batch. One-level: both from the same training batch."""
        if self.graphed:
            return self._graphed_step(batch)
        if self.one_level:
            x, y = batch
            return self._one_level_step(self._layout(x), y)
        (x_train, y_train), (x_val, y_val) = batch
        x_train, x_val = self._layout(x_train), self._layout(x_val)
        # Each backward computes only the gradients its optimiser uses: the alpha step skips every
        # conv weight gradient, the weight step every alpha gradient (the original code computes
        # both each time and discards half).
        self.a_optim.zero_grad(set_to_none=True)
        if self.order == 1:
            _backward(self._arch_loss(x_val, y_val), self.alphas)
        else:
            self._unrolled_backward(x_train, y_train, x_val, y_val)
        self.a_optim.step()

        self.w_optim.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(x_train)
            loss = F.cross_entropy(logits, y_train)
        _backward(loss, self.weights)
        nn.utils.clip_grad_norm_(self.weights, self.grad_clip, foreach=True)
        self.w_optim.step()
        return step_metrics(loss, logits, y_train)

    def _one_level_step(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """min over w and alpha of L_train(w, alpha) (+ regulariser), one backward pass; the
        gradient clip applies to the weights only, as in the StacNAS authors' code."""
        self.a_optim.zero_grad(set_to_none=True)
        self.w_optim.zero_grad(set_to_none=True)
        with self._autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        objective = loss if self.arch_regulariser is None else loss + self.arch_regulariser(self.model)
        _backward(objective, self.alphas + self.weights)
        nn.utils.clip_grad_norm_(self.weights, self.grad_clip, foreach=True)
        self.a_optim.step()
        self.w_optim.step()
        return step_metrics(loss, logits, y)

    # -- the graph-capturable step (cuda_graphs) ------------------------------------------
    def _graphed_step(self, batch) -> dict[str, torch.Tensor]:
        """The same updates as `step`, as functions of the batch that a CUDA graph replays."""
        if self.one_level:
            x, y = batch
            *grads, metrics = self._weight_graph(self._layout(x), y)
        else:
            (x_train, y_train), (x_val, y_val) = batch
            grads = self._alpha_graph(self._layout(x_val), y_val)
        for a, g in zip(self.alphas, grads):  # the graph's output tensors, read afresh every step
            a.grad = g
        self.a_optim.step()
        if not self.one_level:
            metrics = self._weight_graph(self._layout(x_train), y_train)
        return metrics

    def _alpha_grads(self, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
        grads = torch.autograd.grad(self._arch_loss(x, y), self.alphas, allow_unused=True)
        return [torch.zeros_like(a) if g is None else g for a, g in zip(self.alphas, grads)]

    def _weight_update(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss, weight gradients, clipping and the SGD update: no host sync anywhere."""
        with self._autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        clipped_sgd_step(self.weights, torch.autograd.grad(loss, self.weights, allow_unused=True), self.w_optim,
                         self._lr, self.grad_clip)
        return step_metrics(loss, logits, y)

    def _one_level_update(self, x: torch.Tensor, y: torch.Tensor) -> tuple:
        """One-level: the weight update and, returned, the alpha gradients of the same loss."""
        with self._autocast():
            logits = self.model(x)
            loss = F.cross_entropy(logits, y)
        objective = loss if self.arch_regulariser is None else loss + self.arch_regulariser(self.model)
        grads = torch.autograd.grad(objective, self.alphas + self.weights, allow_unused=True)
        n = len(self.alphas)
        clipped_sgd_step(self.weights, grads[n:], self.w_optim, self._lr, self.grad_clip)
        alpha_grads = [torch.zeros_like(a) if g is None else g for a, g in zip(self.alphas, grads[:n])]
        return (*alpha_grads, step_metrics(loss, logits, y))

    @staticmethod
    def hyper_parameters(p) -> dict[str, Any]:
        """The optimisation numbers of a method's search params `p` as keyword arguments (also what the
        benchmarks build their strategy from: params/darts.yaml's paper settings)."""
        return dict(lr=p.lr, lr_min=p.lr_min, momentum=p.momentum, weight_decay=p.weight_decay, grad_clip=p.grad_clip,
                    arch_lr=p.arch_lr, arch_betas=tuple(p.arch_betas), arch_weight_decay=p.arch_weight_decay,
                    order=p.order, hvp_eps=p.hvp_eps)

    @classmethod
    def from_config(cls, model: nn.Module, p, run, device: torch.device, *, epochs: int, val_batches=None,
                    arch_regulariser: Regulariser | None = None, one_level: bool = False) -> "DifferentiableSearch":
        """Build from a method's search params `p` (nascore.methods.darts.SearchParams) and the run params:
        the one place where params become keyword arguments (every strategy has this signature)."""
        return cls(model, epochs=epochs, **cls.hyper_parameters(p), arch_regulariser=arch_regulariser,
                   autocast_dtype=autocast_dtype(run, device),
                   one_level=one_level, channels_last=use_channels_last(run, device),
                   cuda_graphs=graphs_wanted(run.cuda_graphs, device), graphs_strict=run.cuda_graphs == "on")

    def monitor(self, val_batches) -> Hook:
        """The per-epoch record of the search (supernet error, softmax(alpha), derived genotype)."""
        return SearchMonitor(self.model, val_batches)

    def describe(self) -> dict:
        """How the search optimised, for metrics and the genotype's provenance."""
        return {"order": self.order, "optimisation": "one-level" if self.one_level else "bi-level"}

    def outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Files (name -> JSON) and metrics the strategy adds to the search's outputs; alphas need none
        besides the history the monitor keeps."""
        return {}, {}

    def genotype(self) -> Genotype:
        return self.model.genotype()

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "w_optim": self.w_optim.state_dict(),
                "a_optim": self.a_optim.state_dict(), "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optim.load_state_dict(state["w_optim"])
        self.a_optim.load_state_dict(state["a_optim"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.graphed:  # the optimizers hold new state tensors: graphs captured on the old ones are stale
            self._lr.fill_(self.lr)
            self._alpha_graph.reset()
            self._weight_graph.reset()

    # -- architecture gradients ------------------------------------------------------
    def _layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def _autocast(self):
        device = next(self.model.parameters()).device.type
        # no cast cache: a captured graph must not keep casts of the weights from its capture
        return torch.autocast(device, dtype=self.autocast_dtype or torch.float32,
                              enabled=self.autocast_dtype is not None, cache_enabled=False)

    def _arch_loss(self, x: torch.Tensor, y: torch.Tensor, weights: dict | None = None) -> torch.Tensor:
        with self._autocast():
            logits = self._forward(x, weights)
            loss = F.cross_entropy(logits, y)
        if self.arch_regulariser is not None:
            loss = loss + self.arch_regulariser(self.model)
        return loss

    def _forward(self, x: torch.Tensor, weights: dict | None) -> torch.Tensor:
        if weights is None:
            return self.model(x)
        # fresh copies of the BN buffers: the virtual step must not move the running stats
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        return functional_call(self.model, {**weights, **buffers}, (x,))

    def _unrolled_backward(self, x_train, y_train, x_val, y_val) -> None:
        """grad_alpha L_val(w', alpha) - xi * Hessian-vector term, with
        w' = w - xi * (momentum * buf + grad_w L_train + wd * w) (DARTS eq. 7-8). The per-weight
        arithmetic runs as foreach ops: a few kernels over all ~1,400 weight tensors, not ~7 each."""
        named = self.model.named_weight_parameters()
        names = [n for n, _ in named]
        params = [p for _, p in named]
        xi = self.lr
        train_loss = F.cross_entropy(self.model(x_train), y_train)
        grads = torch.autograd.grad(train_loss, params)
        bufs = [self.w_optim.state.get(p, {}).get("momentum_buffer") for p in params]
        with torch.no_grad():
            step = torch._foreach_add(grads, torch._foreach_mul(params, self.weight_decay))
            if all(b is not None for b in bufs):  # every buffer exists from the first weight step on
                torch._foreach_add_(step, torch._foreach_mul(bufs, self.momentum))
            elif any(b is not None for b in bufs):
                for st, b in zip(step, bufs):
                    if b is not None:
                        st.add_(self.momentum * b)
            unrolled = dict(zip(names, torch._foreach_sub(params, torch._foreach_mul(step, xi))))
        for w in unrolled.values():
            w.requires_grad_(True)

        val_loss = self._arch_loss(x_val, y_val, unrolled)
        alphas = self.alphas
        out = torch.autograd.grad(val_loss, alphas + list(unrolled.values()), allow_unused=True)
        d_alpha = [torch.zeros_like(a) if g is None else g for a, g in zip(alphas, out[:len(alphas)])]
        vector = [torch.zeros_like(p) if g is None else g for p, g in zip(params, out[len(alphas):])]

        implicit = self._hessian_vector_product(names, params, vector, x_train, y_train)
        for a, g, h in zip(alphas, d_alpha, implicit):
            a.grad = g - xi * h

    def _hessian_vector_product(self, names, params, vector, x, y) -> list[torch.Tensor]:
        """(grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps), the finite
        difference of DARTS eq. 8 with eps = hvp_eps / ||v||. In fp32 even under autocast: the shift
        has norm hvp_eps over all weights (~1e-5 per weight of a 2M-weight supernet), far below bf16's
        resolution (~4e-3 relative), so cast to bf16 the two shifted networks would be the same one."""
        norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(vector)))
        eps = self.hvp_eps / (norm + 1e-12)
        alphas = self.alphas
        grads = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                shifted = dict(zip(names, torch._foreach_add(params, torch._foreach_mul(vector, sign * eps))))
            loss = F.cross_entropy(self._forward(x, shifted), y)
            grads.append(torch.autograd.grad(loss, alphas, allow_unused=True))
        zero = [torch.zeros_like(a) for a in alphas]
        plus = [z if g is None else g for z, g in zip(zero, grads[0])]
        minus = [z if g is None else g for z, g in zip(zero, grads[1])]
        return [(gp - gn) / (2 * eps) for gp, gn in zip(plus, minus)]


def _backward(loss: torch.Tensor, params: list[torch.Tensor]) -> None:
    """loss.backward(inputs=params) for parameters whose .grad is None (zero_grad(set_to_none=True)):
    the gradients assigned, not accumulated, which spares autograd one op per parameter."""
    for p, g in zip(params, torch.autograd.grad(loss, params, allow_unused=True)):
        p.grad = g


class SearchMonitor(Hook):
    """After each epoch: supernet validation error, softmax(alpha) per group, derived genotype."""

    def __init__(self, model, val_batches) -> None:
        self.model, self.val_batches = model, val_batches

    def after_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if len(self.val_batches.x):  # no held-out images (one-level on the whole set): no val_err
            metrics["val_err"] = topk_errors(self.model, self.val_batches, ks=(1,))["top1_err"]
        metrics["train_err"] = 100.0 * (1.0 - metrics.pop("train_acc", 0.0))
        metrics["lr"] = trainer.task.lr
        probs = self.model.alpha_probs()
        metrics["alphas"] = {k: v.detach().cpu().tolist() for k, v in probs.items()}
        per_group = {k: float(edge_entropy(p).mean().detach()) for k, p in probs.items()}
        metrics["entropy"] = sum(per_group.values()) / len(per_group)  # mean per-edge entropy (nats)
        for k, h in per_group.items():  # per level for multi-level supernets (seed 002)
            metrics[f"entropy_{k}"] = h
        genotype = self.model.genotype()
        metrics["genotype"] = genotype.to_json()["cells"]
        for name, cell in genotype.cells.items():  # seed 002, Fig. 3: skips a derivation would keep
            metrics[f"skips_{name}"] = sum(op == "skip_connect" for op, _ in cell.edges)
