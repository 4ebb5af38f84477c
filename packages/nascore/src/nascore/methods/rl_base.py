"""What RL-controller methods share (seeds 000, 001): controller params, child-training
params, and one controller search run (warm start, MLflow run with a nested run per child,
population parallelism under torchrun, resume). A method supplies the grammar and how a
child is trained and scored."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Callable, Literal

import torch

from nascore.config import ParamsError, spec, to_dict
from nascore.controllers import CONTROLLER_UPDATES, LSTMPolicy, TokenGrammar, warm_start
from nascore.methods.base import Method, Timer
from nascore.runtime import init_distributed
from nascore.strategies.rl import ControllerSearch
from nascore.tracking import log_prepared_input, start_run


@dataclass(frozen=True)
class WarmStartParams:
    target_prob: float = spec(gt=0.0, lt=1.0, doc="train until p(start) >= this; > 0.5 makes it the mode")
    lr: float = spec(gt=0.0)
    max_steps: int = spec(ge=0)


@dataclass(frozen=True)
class PPOParams:
    clip: float = spec(gt=0.0, lt=1.0)
    epochs: int = spec(ge=1)


@dataclass(frozen=True)
class ControllerParams:
    hidden: int = spec(ge=1)
    layers: int = spec(ge=1)
    temperature: float = spec(gt=0.0)
    tanh_constant: float | None = spec(gt=0.0)
    update: str = spec(doc="reinforce | ppo")
    lr: float = spec(gt=0.0)
    baseline_decay: float = spec(ge=0.0, lt=1.0)
    entropy_weight: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    ppo: PPOParams = spec()
    warm_start: WarmStartParams | None = spec(None, doc="null: random initialisation")

    def validate(self, path: str) -> None:
        if self.update not in CONTROLLER_UPDATES:
            raise ParamsError(f"{path}.update: got {self.update!r}; allowed: {', '.join(CONTROLLER_UPDATES.names())}")


@dataclass(frozen=True)
class TrainingParams:
    epochs: int = spec(ge=1)
    batch_size: int = spec(ge=1)
    lr: float = spec(gt=0.0)
    milestones: list[int] = spec(doc="epochs where lr is multiplied by gamma; [] = constant")
    gamma: float = spec(gt=0.0, le=1.0)
    momentum: float = spec(ge=0.0, lt=1.0)
    weight_decay: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    augment: Literal["seed001", "darts", "none"] = spec()
    checkpoint_every_steps: int = spec(ge=0)


def seed_of(seed: int, tag: str) -> int:
    """A stable per-network seed (Python's hash() is salted per process)."""
    return (seed * 1_000_003 + zlib.crc32(tag.encode())) % (2**31)


def children_summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts by status and the best child. Screening counts distinct architectures, as seed 001's Fig. 8
    does (a controller samples some strings again): one passes if any of its children passed."""
    distinct = {r["arch_hash"] for r in records}
    passed = {r["arch_hash"] for r in records if r["status"] == "ok"}
    best = max(records, key=lambda r: r["reward"]) if records else None
    return {"children": len(records), "children_passed": sum(r["status"] == "ok" for r in records),
            "distinct_architectures": len(distinct), "screening_passed": len(passed),
            "screening_pass_rate": round(len(passed) / len(distinct), 4) if distinct else 0.0,
            "failed": sum(r["status"] == "failed" for r in records),
            "best_reward": round(best["reward"], 4) if best else None,
            "best_arch_hash": best["arch_hash"] if best else None}


def publish(done: list[dict[str, Any]], waiting, out) -> None:
    """Move finished networks from the checkpoint folder into the stage's output folder (they
    wait there because DVC clears a stage's outputs before it reruns)."""
    for m in done:
        if m.get("file"):
            (waiting / m["file"]).replace(out / m["file"])


class ControllerMethod(Method):
    """A method whose search is an RL controller over a token grammar."""

    def grammar(self) -> TokenGrammar:
        raise NotImplementedError

    def build_controller(self, grammar: TokenGrammar):
        c = self.p.controller
        policy = LSTMPolicy(grammar, hidden=c.hidden, layers=c.layers, temperature=c.temperature,
                            tanh_constant=c.tanh_constant)
        update = CONTROLLER_UPDATES[c.update](policy, lr=c.lr, baseline_decay=c.baseline_decay,
                                              entropy_weight=c.entropy_weight, grad_clip=c.grad_clip,
                                              **(to_dict(c.ppo) if c.update == "ppo" else {}))
        return policy, update

    def run_controller(self, *, key: str, grammar: TokenGrammar, search, fingerprint: str,
                       evaluate_child: Callable[[list[int], str], dict[str, Any]],
                       describe: Callable[[dict[str, Any]], str], start_ids: list[int] | None,
                       mlflow_params: dict[str, Any], tags: dict[str, str],
                       manifest: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """One controller search to its end (resuming a killed one). Returns the records, the
        controller, the MLflow run id and timings; None on worker ranks under torchrun. `manifest`: the
        prepared dataset the children train and are rewarded on (logged as the run's input)."""
        import mlflow

        rank, _ = init_distributed()  # under torchrun: population-parallel children
        policy, update = self.build_controller(grammar)
        searcher = ControllerSearch(policy, update, iterations=search.iterations, children=search.children,
                                    seed=self.params.run.seed, failed_reward=search.failed_reward,
                                    reward_threshold=search.reward_threshold,
                                    state_path=self.layout.checkpoints(self.name) / f"controller_{key}.pt",
                                    fingerprint=fingerprint)
        if rank != 0:  # a worker: trains its share of each iteration's children, writes nothing
            searcher.run(evaluate_child)
            return None
        prior = searcher.peek_extra()

        def on_child(rec: dict[str, Any]) -> None:
            with start_run(self.name, f"child-{rec['child']}", nested=True,
                           tags={"stage": "search-child", "status": rec["status"], "arch_hash": rec["arch_hash"],
                                 "architecture": describe(rec)[:5000], **tags,
                                 **({"reason": rec["reason"]} if rec.get("reason") else {})}):
                for h in rec.get("history", []):
                    mlflow.log_metrics({k: v for k, v in h.items() if k != "epoch"}, step=int(h["epoch"]))
                mlflow.log_metrics({k: float(rec[k]) for k in ("reward", "val_acc", "fd") if rec.get(k) is not None})
                mlflow.log_dict(rec["arch"], "architecture.json")

        def on_iteration(entry: dict[str, Any]) -> None:
            mlflow.log_metrics({k: float(v) for k, v in entry.items() if k != "iteration"}, step=entry["iteration"])

        c = self.p.controller
        with start_run(self.name, f"search-{key}" if key != "search" else "search",
                       run_id=prior.get("mlflow_run_id"),
                       params={"profile": self.params.profile, **mlflow_params, "controller": to_dict(c),
                               "seed": self.params.run.seed},
                       tags={"stage": "search", "profile": self.params.profile, "seed": str(self.params.run.seed),
                             **tags}) as mlrun:
            searcher.extra["mlflow_run_id"] = mlrun.info.run_id
            if manifest is not None:  # children train and are rewarded on parts of its training split
                log_prepared_input(manifest, "training")
            with Timer() as t:
                if "warm_start" not in prior:  # a fresh search (a resumed one restores the controller)
                    ws = {"steps": 0, "prob": None}
                    if start_ids is not None:
                        if c.warm_start:
                            ws = warm_start(policy, start_ids, **to_dict(c.warm_start))
                        else:  # random start: how likely the start architecture is anyway
                            with torch.no_grad():
                                ws = {"steps": 0, "prob": float(policy.score(torch.tensor([start_ids])).log_prob.exp())}
                        mlflow.log_metrics({"warm_start_prob": ws["prob"], "warm_start_steps": ws["steps"]})
                    searcher.extra["warm_start"] = ws
                records = searcher.run(evaluate_child, on_iteration=on_iteration, on_child=on_child)
            summary = children_summary(records)
            mlflow.log_metrics({k: v for k, v in summary.items() if isinstance(v, (int, float))})
        return {"records": records, "searcher": searcher, "policy": policy, "summary": summary,
                "mlflow_run_id": mlrun.info.run_id, "seconds": round(t.seconds, 1),
                "warm_start": searcher.extra.get("warm_start", {})}
