"""The training loop: readable top to bottom; checkpointing, logging and validation are hooks.

A task has `new_epoch(epoch)`, `step(batch) -> dict of device tensors` (sums: loss, correct, n)
and `state_dict()/load_state_dict()`. Per-step randomness is reseeded from
(seed, epoch, step), so a run resumed from a mid-epoch checkpoint is identical to one that
never stopped.
"""
from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from tqdm import tqdm

from nascore.data.loader import step_seed
from nascore.faults import maybe_kill, maybe_pause
from nascore.layout import load_checkpoint, save_atomically


class Divergence(RuntimeError):
    """The loss became NaN or infinite."""


class Task(Protocol):
    def new_epoch(self, epoch: int) -> None: ...
    def step(self, batch: Any) -> dict[str, torch.Tensor]: ...
    def state_dict(self) -> dict: ...
    def load_state_dict(self, state: dict) -> None: ...


class Hook:
    """Override what you need; every method gets the trainer."""

    def before_train(self, trainer: "Trainer") -> None: ...
    def after_step(self, trainer: "Trainer") -> None: ...
    def after_epoch(self, trainer: "Trainer", metrics: dict[str, float]) -> None: ...
    def after_train(self, trainer: "Trainer") -> None: ...


class Trainer:
    """Runs `task` over `batches` for `epochs`, with hooks around it."""

    def __init__(self, task: Task, batches: Any, epochs: int, *, seed: int,
                 hooks: list[Hook] | None = None, desc: str = "train", data_parallel: bool = False,
                 finite_check_every: int = 50) -> None:
        self.task, self.batches, self.epochs, self.seed = task, batches, epochs, seed
        # the loss sum is read on the host every this many steps (and at each epoch's end) to stop a diverged
        # run early; a read per step would be a host sync per step. Not under DDP: a rank that stopped alone
        # would leave the others waiting in a collective (the epoch's check sees the reduced sums)
        self.finite_check_every = 0 if data_parallel else finite_check_every
        self.data_parallel = data_parallel  # DDP: epoch sums are reduced over the processes
        self.hooks = hooks or []
        self.desc = desc
        self.epoch = 0          # epochs completed
        self.step_in_epoch = 0  # steps completed in the current epoch
        self.global_step = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.history: list[dict[str, float]] = []

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "step_in_epoch": self.step_in_epoch,
                "global_step": self.global_step, "sums": self.sums, "history": self.history,
                "task": self.task.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step_in_epoch = state["epoch"], state["step_in_epoch"]
        self.global_step, self.sums = state["global_step"], state["sums"]
        self.history = state["history"]
        self.task.load_state_dict(state["task"])

    def run(self) -> list[dict[str, float]]:
        for h in self.hooks:
            h.before_train(self)
        while self.epoch < self.epochs:
            self.task.new_epoch(self.epoch)
            bar = tqdm(self.batches.epoch(self.epoch, self.step_in_epoch), total=len(self.batches),
                       initial=self.step_in_epoch, desc=f"{self.desc} {self.epoch + 1}/{self.epochs}",
                       leave=False, mininterval=2.0, disable=os.environ.get("NASCORE_PROGRESS") == "0")
            for batch in bar:
                torch.manual_seed(step_seed(self.seed, self.epoch, self.step_in_epoch))
                out = self.task.step(batch)
                for k, v in out.items():  # accumulate on device: no host sync per step
                    self.sums[k] = self.sums.get(k, 0) + v.detach().double()
                self.step_in_epoch += 1
                self.global_step += 1
                if self.finite_check_every and self.global_step % self.finite_check_every == 0:
                    self._check_finite()
                for h in self.hooks:
                    h.after_step(self)
            metrics = self._epoch_metrics()
            self.epoch, self.step_in_epoch, self.sums = self.epoch + 1, 0, {}
            self.history.append(metrics)
            for h in self.hooks:
                h.after_epoch(self, metrics)
        for h in self.hooks:
            h.after_train(self)
        return self.history

    def _check_finite(self) -> None:
        """Divergence before the step's hooks run (a checkpoint of NaN weights would be resumed)."""
        loss = self.sums.get("loss")
        if loss is not None and not bool(torch.isfinite(loss)):
            raise Divergence(f"train loss is {float(loss)} by step {self.step_in_epoch} of epoch {self.epoch + 1}: "
                             "the run diverged; lower the learning rate or check the data")

    def _epoch_metrics(self) -> dict[str, float]:
        if self.data_parallel:  # sums over every process
            for k in sorted(self.sums):
                dist.all_reduce(self.sums[k])
        n = float(self.sums.pop("n", torch.tensor(1.0)))
        metrics = {"epoch": self.epoch + 1}
        for k, v in self.sums.items():
            metrics[f"train_{'acc' if k == 'correct' else k}"] = float(v) / max(n, 1.0)
        loss = metrics.get("train_loss", 0.0)
        if not math.isfinite(loss):
            raise Divergence(f"train loss is {loss} in epoch {self.epoch + 1}: the run diverged")
        return metrics


class CheckpointHook(Hook):
    """Saves the trainer state atomically every `every_steps` steps and each epoch; resumes
    from it if its fingerprint (the params that shape the run) matches."""

    def __init__(self, path: Path, fingerprint: str, every_steps: int = 0,
                 extra: dict | None = None, device: torch.device | str = "cpu",
                 data_parallel: bool = False, remove_after_train: bool = True) -> None:
        self.data_parallel = data_parallel  # DDP: every process holds the same state, rank 0 writes it
        # False: the stage calls remove() once its outputs and records are written, so a kill between
        # the last step and the outputs resumes at the end instead of losing the run
        self.remove_after_train = remove_after_train
        self.path, self.fingerprint, self.every_steps = Path(path), fingerprint, every_steps
        self.device = torch.device(device)
        self.extra = extra if extra is not None else {}
        self.resumed_from: int | None = None
        self._elapsed_before, self._started = 0.0, None  # wall clock of the run's earlier (killed) segments

    def _load(self) -> dict | None:
        if not self.path.is_file():
            return None
        state = load_checkpoint(self.path, map_location=self.device)
        if state.get("fingerprint") != self.fingerprint:
            print(f"[nascore] {self.path}: checkpoint is from other params or code; starting fresh",
                  file=sys.stderr)
            return None
        return state

    def peek_extra(self) -> dict:
        """The extra data (e.g. the MLflow run id) of a usable checkpoint, before training."""
        state = self._load()
        return dict(state.get("extra", {})) if state else {}

    def elapsed_s(self) -> float:
        """Seconds of training over every segment of the run, resumed ones included."""
        return self._elapsed_before + (time.perf_counter() - self._started if self._started is not None else 0.0)

    def before_train(self, trainer: Trainer) -> None:
        self._started = time.perf_counter()
        state = self._load()
        if state is None:
            return
        self._elapsed_before = float(state.get("elapsed_s", 0.0))
        trainer.load_state_dict(state["trainer"])
        self.extra.update(state.get("extra", {}))
        self.resumed_from = trainer.global_step
        print(f"[nascore] resumed from {self.path} at epoch {trainer.epoch + 1}, "
              f"step {trainer.step_in_epoch}", file=sys.stderr)

    def save(self, trainer: Trainer) -> None:
        if self.data_parallel and dist.get_rank() != 0:
            return
        save_atomically({"fingerprint": self.fingerprint, "trainer": trainer.state_dict(), "extra": self.extra,
                         "elapsed_s": self.elapsed_s()}, self.path)

    def after_step(self, trainer: Trainer) -> None:
        if self.every_steps and trainer.global_step % self.every_steps == 0:
            self.save(trainer)
            _maybe_fault(trainer.global_step)

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        self.save(trainer)

    def after_train(self, trainer: Trainer) -> None:
        _maybe_fault("end")
        if self.remove_after_train:
            self.remove()

    def remove(self) -> None:
        """The stage's outputs are the durable result once written; a checkpoint left behind would let
        a later rerun "resume" a finished run."""
        if self.data_parallel:
            dist.barrier()  # nobody may still be reading it
            if dist.get_rank() != 0:
                return
        self.path.unlink(missing_ok=True)


def _maybe_fault(global_step: int | str) -> None:
    """Fault injection for the resume tests: NASCORE_KILL_AT_STEP=N sends SIGKILL to this process right
    after the checkpoint of step N, as a real crash would; N@k kills the k-th time a trainer of this
    process reaches step N (e.g. in the third child network); `end` kills when the trainer has finished,
    before the stage writes its outputs. NASCORE_PAUSE_AT_STEP=N holds the run there instead
    (nascore.faults.maybe_pause)."""
    maybe_kill(str(global_step), "NASCORE_KILL_AT_STEP")
    maybe_pause(str(global_step), "NASCORE_PAUSE_AT_STEP")
