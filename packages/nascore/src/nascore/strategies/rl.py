"""Controller-driven search (Zoph & Le 2017; seeds 000, 001): per iteration the controller
samples several children, each is trained and scored, and the rewards update the policy.

The loop knows nothing about networks: `evaluate_child(tokens, child_id)` returns a record
with a reward. A child that diverges comes back with status "failed" and `failed_reward`;
the search goes on. State (policy, update, baseline, every finished child) is saved after
each child, so a killed search resumes where it stopped and ends as the uninterrupted one:
the children of iteration i are drawn from a generator seeded by (seed, i) from the policy
as it was at the start of i.

Population-parallel under torchrun: rank 0 samples, every rank trains the children with
child_id % world_size == rank, records are gathered, rank 0 updates the controller.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

import torch
import torch.distributed as dist

from nascore.controllers import LSTMPolicy
from nascore.controllers.updates import PolicyUpdate
from nascore.data.loader import step_seed
from nascore.layout import load_checkpoint, save_atomically

ChildFn = Callable[[list[int], str], dict[str, Any]]


def child_id(iteration: int, index: int) -> str:
    return f"i{iteration:03d}c{index:02d}"


class ControllerSearch:
    """The RL search loop with checkpoint/resume and optional population parallelism."""

    def __init__(self, policy: LSTMPolicy, update: PolicyUpdate, *, iterations: int, children: int, seed: int,
                 failed_reward: float = 0.0, reward_threshold: float | None = None,
                 state_path: Path | None = None, fingerprint: str = "") -> None:
        self.policy, self.update = policy, update
        self.iterations, self.children, self.seed = iterations, children, seed
        self.failed_reward, self.reward_threshold = failed_reward, reward_threshold
        self.state_path, self.fingerprint = (Path(state_path) if state_path else None), fingerprint
        self.records: list[dict[str, Any]] = []
        self.iteration_log: list[dict[str, Any]] = []
        self.iteration = 0
        self.resumed = False
        self.extra: dict[str, Any] = {}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"fingerprint": self.fingerprint, "iteration": self.iteration, "records": self.records,
                "iteration_log": self.iteration_log, "policy": self.policy.state_dict(),
                "update": self.update.state_dict(), "extra": self.extra}

    def _save(self) -> None:
        if self.state_path is None or _rank() != 0:
            return
        save_atomically(self.state_dict(), self.state_path)

    def peek_extra(self) -> dict[str, Any]:
        state = self._load()
        return dict(state["extra"]) if state else {}

    def _load(self) -> dict[str, Any] | None:
        if self.state_path is None or not self.state_path.is_file():
            return None
        state = load_checkpoint(self.state_path, map_location="cpu")
        if state.get("fingerprint") != self.fingerprint:
            print(f"[nascore] {self.state_path}: state is from other params; starting fresh", file=sys.stderr)
            return None
        return state

    def _resume(self) -> None:
        state = self._load()
        if state is None:
            return
        self.iteration, self.records = state["iteration"], state["records"]
        self.iteration_log, self.extra = state["iteration_log"], state["extra"]
        self.policy.load_state_dict(state["policy"])
        self.update.load_state_dict(state["update"])
        self.resumed = True
        print(f"[nascore] controller search resumed at iteration {self.iteration + 1} with "
              f"{len(self.records)} children done", file=sys.stderr)

    def finish(self) -> None:
        """Drop the state once the outputs are written: a later rerun starts fresh."""
        if self.state_path is not None and _rank() == 0:
            self.state_path.unlink(missing_ok=True)

    # -- the loop -----------------------------------------------------------------------------
    def sample(self, iteration: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(step_seed(self.seed, iteration, -7))
        with torch.no_grad():
            return self.policy.sample(self.children, gen).tokens.cpu()

    def run(self, evaluate_child: ChildFn, on_iteration: Callable[[dict[str, Any]], None] | None = None,
            on_child: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
        """Search to the end (or the reward threshold); returns every child's record."""
        self._resume()
        rank, world = _rank(), _world()
        while self.iteration < self.iterations and not self._reached_threshold():
            it = self.iteration
            tokens = self.sample(it) if rank == 0 else None
            tokens = _broadcast(tokens)
            done = {r["child"] for r in self.records if r["iteration"] == it}
            pending: list[dict[str, Any]] = []
            mine = [k for k in range(self.children) if k % world == rank and child_id(it, k) not in done]
            for k in mine:
                cid = child_id(it, k)
                rec = evaluate_child(tokens[k].tolist(), cid)
                rec.update(child=cid, iteration=it, index=k, tokens=tokens[k].tolist())
                if rec.get("status") == "failed":
                    rec["reward"] = self.failed_reward
                if world == 1:
                    self.records.append(rec)
                    self._save()
                    if on_child:
                        on_child(rec)
                else:
                    pending.append(rec)
            if world > 1:  # gather every rank's children in child order
                gathered = _all_gather(pending)
                new = sorted((r for part in gathered for r in part), key=lambda r: r["index"])
                self.records += new
                if on_child and rank == 0:
                    for rec in new:
                        on_child(rec)
            batch = sorted((r for r in self.records if r["iteration"] == it), key=lambda r: r["index"])
            rewards = torch.tensor([float(r["reward"]) for r in batch])
            if rank == 0:
                stats = self.update.update(tokens, rewards, self.policy.score(tokens).log_prob.detach())
            else:
                stats = {}
            self._sync_policy()
            entry = {"iteration": it + 1, "reward_mean": float(rewards.mean()), "reward_max": float(rewards.max()),
                     "failed": sum(r.get("status") == "failed" for r in batch), **stats}
            self.iteration_log.append(entry)
            self.iteration = it + 1
            self._save()
            if on_iteration and rank == 0:
                on_iteration(entry)
        return self.records

    def _reached_threshold(self) -> bool:
        return (self.reward_threshold is not None and
                any(r.get("status") != "failed" and r["reward"] >= self.reward_threshold for r in self.records))

    def _sync_policy(self) -> None:
        """Every rank continues with rank 0's controller (and baseline)."""
        if _world() == 1:
            return
        for p in self.policy.parameters():
            dist.broadcast(p.data, 0)
        self.update.baseline = _broadcast(self.update.baseline)


def _rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def _world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _broadcast(obj: Any) -> Any:
    if _world() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def _all_gather(obj: Any) -> list[Any]:
    out: list[Any] = [None] * _world()
    dist.all_gather_object(out, obj)
    return out
