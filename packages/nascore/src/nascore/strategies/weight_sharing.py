"""Weight-sharing search over sampled architectures (random search with weight sharing, Li &
Talwalkar 2019, sec. 4): a path supernet (nascore.supernets.paths) is trained with one sampled
architecture per step; afterwards sampled architectures are ranked by their accuracy with the
shared weights on held-out images, and the best one is the search result (trained from scratch by
the method's fine-tune stage).

Ranking (the paper's two rounds): `candidates` architectures, each scored on the first
`rank_batches` validation batches; the best `finalists` re-scored on the whole validation split.
A shared-weight score uses batch statistics in BatchNorm (running statistics mix every path the
supernet ever ran), and leaves the running statistics as they were.

The strategy contract is DifferentiableSearch's: from_config, new_epoch, step, genotype, monitor,
describe, state_dict. Who samples is a `PathSampler`; ENAS (nascore.strategies.enas) swaps the
uniform sampler for a learned controller."""
from __future__ import annotations

from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from nascore.genotype import CellGenotype, Genotype
from nascore.spaces.darts import CellSpace
from nascore.strategies.darts import STRATEGIES
from nascore.train import Hook, Trainer
from nascore.train.tasks import step_metrics


class PathSampler(Protocol):
    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Genotype]: ...


def sampled_ops(space: CellSpace) -> list[str]:
    """The ops a sampled edge may hold: every primitive but `none` (a derived cell never holds it)."""
    return [op for op in space.primitives if op != "none"]


def sample_cell(space: CellSpace, generator: torch.Generator | None = None) -> CellGenotype:
    """Per node: `edges_per_node` distinct inputs among the earlier states, each with an op, all
    uniformly at random (Li & Talwalkar's sampler over the DARTS space)."""
    ops = sampled_ops(space)
    edges: list[tuple[str, int]] = []
    for j in range(space.steps):
        for src in torch.randperm(j + 2, generator=generator)[:space.edges_per_node].tolist():
            edges.append((ops[int(torch.randint(len(ops), (1,), generator=generator))], src))
    concat = tuple(range(2 + space.steps - space.multiplier, 2 + space.steps))
    return CellGenotype(edges=tuple(edges), concat=concat, edges_per_node=space.edges_per_node)


class UniformSampler:
    """Every architecture of the cell space equally likely, one cell per alpha group."""

    def __init__(self, space: CellSpace, cells: Sequence[str]) -> None:
        self.space, self.cells = space, list(cells)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[Genotype]:
        return [Genotype({c: sample_cell(self.space, generator) for c in self.cells}) for _ in range(n)]


def edge_frequencies(genotypes: Sequence[Genotype], space: CellSpace, cell: str) -> torch.Tensor:
    """[edges, primitives]: the share of `genotypes` whose `cell` holds op k on edge e (edge order of
    CellSpace.edges()); a row sums to how often its edge is used."""
    index = {edge: i for i, edge in enumerate(space.edges())}
    counts = torch.zeros(space.num_edges, len(space.primitives))
    for g in genotypes:
        c = g.cells[cell]
        for j, node in enumerate(c.nodes):
            for op, src in node:
                counts[index[(2 + j, src)], space.primitives.index(op)] += 1
    return counts / max(len(genotypes), 1)


def _batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def path_accuracy(model: nn.Module, path: Genotype, batches, max_batches: int | None = None) -> float:
    """Accuracy (0..1) of one architecture with the supernet's shared weights on the first
    `max_batches` batches of `batches` (all: None); BatchNorm on batch statistics, state untouched."""
    norms = _batch_norms(model)
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone())
             for m in norms if m.track_running_stats]
    was = model.training
    model.train()
    model.path = path
    correct = n = 0
    for i, (x, y) in enumerate(batches.epoch(0)):
        if max_batches is not None and i >= max_batches:
            break
        correct += int((model(x).argmax(1) == y).sum())
        n += len(y)
    for m, (mean, var, count) in zip([m for m in norms if m.track_running_stats], saved):
        m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
    model.train(was)
    return correct / max(n, 1)


def rank_paths(model: nn.Module, paths: Sequence[Genotype], batches, *, rank_batches: int,
               finalists: int) -> list[dict[str, Any]]:
    """Two rounds: every path on `rank_batches` batches, the best `finalists` on every batch.
    Returns one record per distinct path, best first (finalists by their full score)."""
    distinct = list({p.canonical_hash(): p for p in paths}.values())
    rows = [{"genotype_hash": p.canonical_hash(), "genotype": p,
             "screen_acc": path_accuracy(model, p, batches, rank_batches)} for p in distinct]
    rows.sort(key=lambda r: (-r["screen_acc"], r["genotype_hash"]))
    for r in rows[:finalists]:
        r["val_acc"] = path_accuracy(model, r["genotype"], batches)
    rows[:finalists] = sorted(rows[:finalists], key=lambda r: (-r["val_acc"], r["genotype_hash"]))
    return rows


@STRATEGIES.register("random_ws")
class WeightSharingSearch:
    """One sampled path per training step; the result is the best of sampled paths ranked by the
    shared weights. `sampler` decides which paths: uniform here, a controller in ENAS."""

    def __init__(self, model: nn.Module, sampler: PathSampler, *, lr: float, lr_min: float, momentum: float,
                 weight_decay: float, grad_clip: float, epochs: int, val_batches, candidates: int,
                 rank_batches: int, finalists: int, probes: int, seed: int) -> None:
        from timm.scheduler import CosineLRScheduler

        if not hasattr(model, "path"):
            raise ValueError(f"{type(model).__name__} runs no single path: use a path supernet (supernet 'paths')")
        if not len(val_batches.x):
            raise ValueError("ranking by shared weights needs held-out images: set search.train_portion < 1")
        self.model, self.sampler, self.grad_clip, self.val_batches = model, sampler, grad_clip, val_batches
        self.candidates, self.rank_batches, self.finalists = candidates, rank_batches, finalists
        self.probes, self.seed = probes, seed
        self.weights = model.weight_parameters()
        self.w_optim = torch.optim.SGD(self.weights, lr, momentum=momentum, weight_decay=weight_decay, foreach=True)
        self.scheduler = CosineLRScheduler(self.w_optim, t_initial=epochs, lr_min=lr_min, warmup_t=0,
                                           t_in_epochs=True)
        self.ranking: list[dict[str, Any]] = []

    @classmethod
    def from_config(cls, model: nn.Module, p, run, device: torch.device, *, epochs: int, val_batches=None,
                    arch_regulariser=None, one_level: bool = False) -> "WeightSharingSearch":
        """From a method's search params `p` (nascore.methods.random_ws.SearchParams)."""
        if arch_regulariser is not None:
            raise ValueError("random search with weight sharing has no architecture loss to regularise")
        r = p.ranking
        return cls(model, UniformSampler(model.space, model.alphas.keys()), lr=p.lr, lr_min=p.lr_min,
                   momentum=p.momentum, weight_decay=p.weight_decay, grad_clip=p.grad_clip, epochs=epochs,
                   val_batches=val_batches, candidates=r.candidates, rank_batches=r.rank_batches,
                   finalists=r.finalists, probes=r.probes, seed=run.seed)

    # -- lifecycle -------------------------------------------------------------------
    def new_epoch(self, epoch: int) -> None:
        self.scheduler.step(epoch)
        self.model.train()

    @property
    def lr(self) -> float:
        return self.w_optim.param_groups[0]["lr"]

    def step(self, batch) -> dict[str, torch.Tensor]:
        x, y = batch
        self.model.path = self.sampler.sample(1)[0]  # the trainer reseeds the global RNG per step
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.w_optim.zero_grad(set_to_none=True)  # ops off the path get no gradient and no update
        loss.backward()
        nn.utils.clip_grad_norm_(self.weights, self.grad_clip)
        self.w_optim.step()
        return step_metrics(loss, logits, y)

    def probe_paths(self) -> list[Genotype]:
        """A few fixed architectures the monitor scores each epoch (the same ones every epoch)."""
        return self.sampler.sample(self.probes, torch.Generator().manual_seed(self.seed + 7))

    def genotype(self) -> Genotype:
        """The best of `candidates` sampled architectures by shared-weight validation accuracy."""
        paths = self.sampler.sample(self.candidates, torch.Generator().manual_seed(self.seed))
        self.ranking = rank_paths(self.model, paths, self.val_batches, rank_batches=self.rank_batches,
                                  finalists=self.finalists)
        return self.ranking[0]["genotype"]

    def monitor(self, val_batches) -> Hook:
        return PathMonitor(self)

    def outputs(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """ranking.json (every ranked architecture, best first) and the ranking's metrics."""
        rows = [{"rank": i + 1, "genotype_hash": r["genotype_hash"], "screen_acc": round(r["screen_acc"], 4),
                 **({"val_acc": round(r["val_acc"], 4)} if "val_acc" in r else {}),
                 "cells": r["genotype"].to_json()["cells"]} for i, r in enumerate(self.ranking)]
        best = self.ranking[0]
        return ({"ranking.json": {"candidates": self.candidates, "rank_batches": self.rank_batches,
                                  "finalists": self.finalists, "architectures": rows}},
                {"ranked_architectures": len(rows), "shared_val_err": round(100 * (1 - best["val_acc"]), 4)})

    def describe(self) -> dict:
        return {"optimisation": "weight sharing, one uniformly sampled architecture per step"}

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "w_optim": self.w_optim.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.w_optim.load_state_dict(state["w_optim"])


class PathMonitor(Hook):
    """After each epoch: the shared-weight validation error of the strategy's probe architectures
    (their mean), the best of them as the epoch's genotype, and how the sampler spreads its
    choices ("alphas": the share of 256 samples holding op k on edge e; "entropy": of that
    distribution over ops, per used edge, in nats)."""

    def __init__(self, strategy: WeightSharingSearch, samples: int = 256) -> None:
        self.strategy, self.samples = strategy, samples

    def after_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        s = self.strategy
        model, space = s.model, s.model.space
        metrics["train_err"] = 100.0 * (1.0 - metrics.pop("train_acc", 0.0))
        metrics["lr"] = s.lr
        probes = s.probe_paths()
        accs = [path_accuracy(model, p, s.val_batches) for p in probes]
        metrics["val_err"] = 100.0 * (1.0 - sum(accs) / len(accs))
        drawn = s.sampler.sample(self.samples, torch.Generator().manual_seed(s.seed + 11))
        freq = {c: edge_frequencies(drawn, space, c) for c in model.alphas}
        metrics["alphas"] = {c: f.tolist() for c, f in freq.items()}
        per_cell = {c: _op_entropy(f) for c, f in freq.items()}
        metrics["entropy"] = sum(per_cell.values()) / len(per_cell)
        best = probes[max(range(len(probes)), key=lambda i: accs[i])]
        metrics["genotype"] = best.to_json()["cells"]


def _op_entropy(freq: torch.Tensor) -> float:
    """Mean over used edges of the entropy of the op distribution given the edge is used."""
    used = freq.sum(1) > 0
    p = freq[used] / freq[used].sum(1, keepdim=True)
    return float(-(p * p.clamp_min(1e-12).log()).sum(1).mean())
