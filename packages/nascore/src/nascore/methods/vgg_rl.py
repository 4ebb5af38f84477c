"""vgg_rl (seed 001, BJUT 2021): RL search over a VGG-11-shaped chain, the controller
warm-started on VGG-11, then screening -> generation -> fine-tune -> evaluate.

Stages (dvc.yaml): search (controller + screened children) -> generation (survivors trained
longer, ranked on validation) -> finetune (top k on the full training set, the paper's step
schedule) -> evaluate (test top-1 / top-5). Every number comes from params/vgg_rl.yaml.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from nascore.config import ParamsError, spec, to_dict
from nascore.controllers.grammar import GrammarError
from nascore.data.loader import TensorBatches, make_transform
from nascore.evaluate.complexity import count_macs, count_params
from nascore.evaluate.metrics import topk_errors
from nascore.layout import load_checkpoint, read_json, save_atomically, write_json, write_tsv
from nascore.methods.base import METHODS, Timer, stage
from nascore.methods.darts import EvaluateParams
from nascore.methods.rl_base import ControllerMethod, ControllerParams, TrainingParams, publish, seed_of
from nascore.runtime import autocast_dtype, compile_network, hardware
from nascore.spaces.chain import ChainArchitecture, ChainGrammar, ChainNet
from nascore.tracking import log_prepared_input, start_run
from nascore.models.registered import NetworkSpec, log_network
from nascore.tracking.schema import headline
from nascore.train.child import Screening, train_network


@dataclass(frozen=True)
class ChainSpaceParams:
    slots: list[str] = spec(doc="slot kinds in chain order: conv, act, pool (VGG-11: 8 conv, 8 act, 5 pool)")
    actions: dict[str, list[str]] = spec(doc="candidate actions per slot kind; zero skips the layer")
    counts: list[int] = spec(doc="filter counts a conv action may take")
    start: list[list[Any]] = spec(doc="the starting architecture, one [op, count] per slot (VGG-11)")


@dataclass(frozen=True)
class ScreeningParams:
    epoch: int = spec(ge=1, doc="seed 001: 20")
    min_val_acc: float = spec(ge=0.0, le=1.0, doc="seed 001: 0.60")


@dataclass(frozen=True)
class RLSearchParams:
    dataset: Literal["cifar10", "cifar100"]
    val_fraction: float = spec(gt=0.0, lt=1.0, doc="held-out share of the training set (45k / 5k: 0.1)")
    iterations: int = spec(ge=1)
    children: int = spec(ge=1, doc="children sampled per controller update")
    failed_reward: float = spec(doc="reward of a child that diverged")
    reward_threshold: float | None = spec(doc="stop once a child reaches it (null: run every iteration)")
    screening: ScreeningParams = spec()
    child: TrainingParams = spec()

    def validate(self, path: str) -> None:
        if self.screening.epoch > self.child.epochs:
            raise ParamsError(f"{path}.screening.epoch: {self.screening.epoch} > child.epochs {self.child.epochs}")


@dataclass(frozen=True)
class GenerationParams:
    candidates: int | None = spec(ge=1, doc="survivors (best search reward first) trained and ranked; null: all")
    train: TrainingParams = spec()


@dataclass(frozen=True)
class RLFinetuneParams:
    top_k: int = spec(ge=1, doc="best-ranked candidates fine-tuned (seed 001: 10)")
    train: TrainingParams = spec()


@dataclass(frozen=True)
class VggRlParams:
    space: ChainSpaceParams
    controller: ControllerParams
    search: RLSearchParams
    generation: GenerationParams
    finetune: RLFinetuneParams
    evaluate: EvaluateParams
    paper: dict[str, Any] = spec(default_factory=dict)

    def validate(self, path: str) -> None:
        try:
            ChainGrammar(self.space.slots, self.space.actions, self.space.counts).tokens_of(self.space.start)
        except GrammarError as e:
            sep = ": " if path.endswith(".yaml") else "."  # file root or a profile's section
            raise ParamsError(f"{path}{sep}space.start: {e}") from None


def _batches(x, y, tp: TrainingParams, cp, device, seed: int, train: bool) -> TensorBatches:
    kind = tp.augment if train else "none"
    t = make_transform(kind, mean=cp.mean, std=cp.std, crop_size=32)
    return TensorBatches(x.to(device), y.to(device), tp.batch_size, t, shuffle=train, seed=seed)


@METHODS.register("vgg_rl")
class VggRlMethod(ControllerMethod):
    name = "vgg_rl"
    params_cls = VggRlParams
    search_stages = ("search", "generation")
    hash_key = "arch_hash"  # evaluate's metrics name the chain trained by its hash

    def grammar(self) -> ChainGrammar:
        s = self.p.space
        return ChainGrammar(s.slots, s.actions, s.counts)

    def architecture(self, tokens: list[int]) -> ChainArchitecture:
        return ChainArchitecture.from_slots(self.grammar().layers(tokens))

    # -- data ------------------------------------------------------------------------------------
    def _split(self, dataset: str):
        """Training tensors split into train / validation (search never sees the test set)."""
        tensors, manifest = self.data(dataset)
        y = tensors["train_y"]
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(self.params.run.seed))
        n_val = max(1, int(round(len(y) * self.p.search.val_fraction)))
        return tensors, manifest, perm[n_val:], perm[:n_val]

    def _train_val(self, tensors, tr, va, tp: TrainingParams, device):
        cp, seed = self.params.data.cifar, self.params.run.seed
        x = tensors["train_x"] if tp.augment == "seed001" else tensors["train_x32"]
        train = _batches(x[tr], tensors["train_y"][tr], tp, cp, device, seed, True)
        val = _batches(tensors["train_x32"][va], tensors["train_y"][va], tp, cp, device, 0, False)
        return train, val

    def _train(self, arch: ChainArchitecture, tp: TrainingParams, train, val, num_classes: int, tag: str,
               fingerprint: str, device, screening: Screening | None = None, final: bool = False) -> dict[str, Any]:
        """final: a long training (generation, fine-tuning), compiled per run.compile; search children
        are short and each a new architecture, so they stay eager."""
        torch.manual_seed(seed_of(self.params.run.seed, tag))  # the child's initial weights
        model = ChainNet(arch, num_classes).to(device)
        if final:
            compile_network(model, self.params.run, device)
        rec = train_network(model, train, epochs=tp.epochs, lr=tp.lr, momentum=tp.momentum,
                            weight_decay=tp.weight_decay, grad_clip=tp.grad_clip, milestones=tp.milestones,
                            gamma=tp.gamma, seed=seed_of(self.params.run.seed, tag),
                            ckpt_path=self.layout.checkpoints(self.name) / f"{tag}.pt",
                            fingerprint=fingerprint + arch.canonical_hash(),
                            checkpoint_every_steps=tp.checkpoint_every_steps, val=val, screening=screening,
                            autocast=autocast_dtype(self.params.run, device), desc=tag)
        rec.update(arch=arch.to_json(), arch_hash=arch.canonical_hash(), model=model)
        return rec

    # -- stages ----------------------------------------------------------------------------------
    def search(self, stage: str = "search") -> dict[str, Any]:
        self.check_stage(stage)
        return self.controller_search() if stage == "search" else self.generation()

    @stage(lambda self: self.layout.search_dir(self.name) / "status.json",
           lambda self: self.layout.metrics(f"{self.name}-search"))
    def controller_search(self) -> dict[str, Any]:
        p = self.p.search
        out, metrics_path = self.layout.search_dir(self.name), self.layout.metrics(f"{self.name}-search")
        tensors, manifest, tr, va = self._split(p.dataset)
        device = self.device()
        train, val = self._train_val(tensors, tr, va, p.child, device)
        num_classes = len(tensors["classes"])
        grammar = self.grammar()
        fingerprint = self.params.fingerprint("space", "controller", "search")
        screening = Screening(p.screening.epoch, p.screening.min_val_acc)

        def evaluate_child(tokens: list[int], cid: str) -> dict[str, Any]:
            arch = self.architecture(tokens)
            rec = self._train(arch, p.child, train, val, num_classes, f"child-{cid}", fingerprint, device, screening)
            rec.pop("model")
            rec["reward"] = rec["val_acc"] if rec["val_acc"] is not None else p.failed_reward
            return rec

        res = self.run_controller(
            key="search", grammar=grammar, search=p, fingerprint=fingerprint, evaluate_child=evaluate_child,
            describe=lambda rec: ChainArchitecture.from_json(rec["arch"]).describe(),
            start_ids=grammar.tokens_of(self.p.space.start),
            mlflow_params={"space": to_dict(self.p.space), "search": to_dict(p)},
            tags={"dataset": manifest["display_name"]}, manifest=manifest)
        if res is None:
            return {"status": "ok", "worker": True}
        out.mkdir(parents=True, exist_ok=True)
        save_atomically({"state_dict": res["policy"].state_dict(), "vocab": grammar.vocab}, out / "controller.pt")
        write_json(out / "children.json", {"children": res["records"], "iterations": res["searcher"].iteration_log,
                                           "start": self.p.space.start, "vocab": list(grammar.vocab)})
        write_json(out / "status.json", {"status": "ok", "mlflow_run_id": res["mlflow_run_id"]})
        write_tsv(self.layout.plot(f"{self.name}-search"), res["searcher"].iteration_log,
                  ["iteration", "reward_mean", "reward_max", "baseline", "entropy", "failed"])
        metrics = {"status": "ok", **res["summary"], "iterations": res["searcher"].iteration,
                   "children_per_iteration": p.children, "controller": self.p.controller.update,
                   "warm_start_prob": round(res["warm_start"].get("prob") or 0.0, 4),
                   "search_seconds": res["seconds"], "resumed": res["searcher"].resumed,
                   "dataset": manifest["display_name"], "images": {"train": len(tr), "val": len(va)},
                   "profile": self.params.profile, "hardware": hardware()}
        write_json(metrics_path, metrics)
        res["searcher"].finish()
        return metrics

    @stage(lambda self: self.layout.search_dir(self.name, "generation") / "status.json",
           lambda self: self.layout.metrics(f"{self.name}-generation"))
    def generation(self) -> dict[str, Any]:
        """Survivors of screening trained `generation.train.epochs` and ranked on validation."""
        g = self.p.generation
        out, metrics_path = self.layout.search_dir(self.name, "generation"), self.layout.metrics(
            f"{self.name}-generation")
        self.require(self.layout.search_dir(self.name) / "status.json", "not run: no search result")
        children = read_json(self.layout.search_dir(self.name) / "children.json")["children"]
        best: dict[str, dict[str, Any]] = {}
        for r in children:  # one entry per distinct architecture, its best search reward
            if r["status"] == "ok" and (r["arch_hash"] not in best or r["reward"] > best[r["arch_hash"]]["reward"]):
                best[r["arch_hash"]] = r
        picked = sorted(best.values(), key=lambda r: (-r["reward"], r["child"]))[:g.candidates or None]
        tensors, manifest, tr, va = self._split(self.p.search.dataset)
        device = self.device()
        train, val = self._train_val(tensors, tr, va, g.train, device)
        ledger_path = self.layout.checkpoints(self.name) / "generation.json"
        fingerprint = self.params.fingerprint("space", "controller", "search", "generation")
        ledger = read_json(ledger_path) if ledger_path.is_file() else {}
        if ledger.get("fingerprint") != fingerprint:
            ledger = {"fingerprint": fingerprint, "done": {}}
        import mlflow

        with start_run(self.name, "generation", run_id=ledger.get("mlflow_run_id"),
                       params={"generation": to_dict(g), "profile": self.params.profile},
                       tags={"stage": "generation", "dataset": manifest["display_name"],
                             "profile": self.params.profile}) as mlrun:
            ledger["mlflow_run_id"] = mlrun.info.run_id
            log_prepared_input(manifest, "training")  # trained on its train part, ranked on its validation part
            with Timer() as t:
                for r in picked:
                    if r["arch_hash"] in ledger["done"]:
                        continue
                    arch = ChainArchitecture.from_json(r["arch"])
                    rec = self._train(arch, g.train, train, val, len(tensors["classes"]),
                                      f"generation-{r['arch_hash']}", fingerprint, device, final=True)
                    rec.pop("model")
                    rec.update(child=r["child"], search_reward=r["reward"])
                    ledger["done"][r["arch_hash"]] = rec
                    write_json(ledger_path, ledger)
                    mlflow.log_metric(f"val_acc_{r['arch_hash']}", rec["val_acc"] or 0.0)
        ranking = sorted(ledger["done"].values(),
                         key=lambda r: (r["status"] != "ok", -(r["val_acc"] or 0.0), r["child"]))
        for i, r in enumerate(ranking):
            r["rank"] = i + 1
        write_json(out / "ranking.json", {"ranking": ranking})
        write_json(out / "status.json", {"status": "ok", "mlflow_run_id": mlrun.info.run_id})
        metrics = {"status": "ok", "candidates": len(ranking), "survivors": len(best),
                   "best_val_acc": round(ranking[0]["val_acc"] or 0.0, 4) if ranking else None,
                   "best_arch_hash": ranking[0]["arch_hash"] if ranking else None,
                   "epochs": g.train.epochs, "generation_seconds": round(t.seconds, 1),
                   "profile": self.params.profile, "hardware": hardware()}
        write_json(metrics_path, metrics)
        ledger_path.unlink(missing_ok=True)  # only now: a kill before this line resumes from the ledger
        return metrics

    def _ranking(self) -> list[dict[str, Any]]:
        gdir = self.layout.search_dir(self.name, "generation")
        self.require(gdir / "status.json", "not run: no generation ranking")
        return [r for r in read_json(gdir / "ranking.json")["ranking"] if r["status"] == "ok"]

    @stage(lambda self, dataset: self.layout.finetune_dir(self.name, dataset) / "status.json")
    def finetune(self, dataset: str) -> dict[str, Any]:
        """The top k of the ranking trained on the whole training set of `dataset`."""
        f, run = self.p.finetune, self.params.run
        out = self.layout.finetune_dir(self.name, dataset)
        out.mkdir(parents=True, exist_ok=True)
        ranking = self._ranking()[:f.top_k]
        tensors, manifest = self.data(dataset)
        device = self.device()
        cp, tp = self.params.data.cifar, f.train
        x = tensors["train_x"] if tp.augment == "seed001" else tensors["train_x32"]
        train = _batches(x, tensors["train_y"], tp, cp, device, run.seed, True)
        fingerprint = self.params.fingerprint("finetune") + dataset
        done = []
        with start_run(self.name, f"finetune-{dataset}", params={"finetune": to_dict(f)},
                       tags={"stage": "finetune", "dataset": manifest["display_name"],
                             "profile": self.params.profile}) as mlrun:
            log_prepared_input(manifest, "training")
            with Timer() as t:
                for r in ranking:
                    # finished finalists wait in checkpoints/ (DVC clears a stage's outs before it reruns)
                    path = self.layout.checkpoints(self.name) / f"finetune-{dataset}" / f"rank{r['rank']:02d}.pt"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    key = fingerprint + r["arch_hash"]
                    saved = load_checkpoint(path) if path.is_file() else {}
                    if saved.get("fingerprint") == key:  # finished before a kill, with these params
                        done.append({"rank": r["rank"], "arch_hash": r["arch_hash"], "file": path.name,
                                     **saved["record"]})
                        continue
                    arch = ChainArchitecture.from_json(r["arch"])
                    rec = self._train(arch, tp, train, None, len(tensors["classes"]),
                                      f"finetune-{dataset}-{r['arch_hash']}", fingerprint, device, final=True)
                    model = rec.pop("model")
                    keep = {k: rec[k] for k in ("status", "epochs", "params") if k in rec}
                    keep["reason"] = rec.get("reason")
                    keep["train_err"] = (100.0 * (1 - rec["history"][-1]["train_acc"])
                                         if rec["history"] else None)
                    save_atomically({"state_dict": model.state_dict(), "arch": r["arch"], "record": keep,
                                     "fingerprint": key, "num_classes": len(tensors["classes"])}, path)
                    done.append({"rank": r["rank"], "arch_hash": r["arch_hash"], "file": path.name, **keep})
            for m in done:  # each fine-tuned network as a model that can be registered (outside train_seconds)
                if m["status"] == "ok":
                    saved = load_checkpoint(self.layout.checkpoints(self.name) / f"finetune-{dataset}" / m["file"])
                    log_network(saved["state_dict"], NetworkSpec("chain", saved["arch"],
                                                                 {"num_classes": saved["num_classes"]}),
                                image_shape=(3, 32, 32), num_classes=saved["num_classes"], mean=cp.mean, std=cp.std,
                                name=f"rank{m['rank']:02d}", tags={"arch_hash": m["arch_hash"], "rank": str(m["rank"]),
                                                                 "dataset": manifest["display_name"]})
        publish(done, self.layout.checkpoints(self.name) / f"finetune-{dataset}", out)
        status = {"status": "ok", "mlflow_run_id": mlrun.info.run_id, "dataset": manifest["display_name"],
                  "models": done, "epochs": tp.epochs, "train_images": len(train.x),
                  "train_seconds": round(t.seconds, 1)}
        write_json(out / "status.json", status)
        return status

    @stage(lambda self, dataset: self.layout.metrics(f"{self.name}-{dataset}"))
    def evaluate(self, dataset: str) -> dict[str, Any]:
        metrics_path = self.layout.metrics(f"{self.name}-{dataset}")
        fdir = self.layout.finetune_dir(self.name, dataset)
        status = self.require(fdir / "status.json", "not run")
        device = self.device()
        tensors, manifest = self.data(dataset)
        cp = self.params.data.cifar
        test = TensorBatches(tensors["test_x"].to(device), tensors["test_y"].to(device), self.p.evaluate.batch_size,
                             make_transform("none", mean=cp.mean, std=cp.std), shuffle=False, seed=0)
        rows = []
        import mlflow

        with start_run(self.name, f"evaluate-{dataset}", parent_run_id=status["mlflow_run_id"],
                       params={"profile": self.params.profile, "evaluate": to_dict(self.p.evaluate),
                               "seed": self.params.run.seed},
                       tags={"stage": "evaluate", "dataset": manifest["display_name"], "profile": self.params.profile,
                             "seed": str(self.params.run.seed), "finetune_run_id": status["mlflow_run_id"]}):
            log_prepared_input(manifest, "test")
            for m in status["models"]:
                if m["status"] != "ok":
                    rows.append({"rank": m["rank"], "arch_hash": m["arch_hash"], "status": m["status"],
                                 "reason": m.get("reason")})
                    continue
                saved = load_checkpoint(fdir / m["file"], map_location=device)
                arch = ChainArchitecture.from_json(saved["arch"])
                model = ChainNet(arch, saved["num_classes"]).to(device)
                model.load_state_dict(saved["state_dict"])
                errs = topk_errors(model, test, ks=(1, 5))
                row = {"rank": m["rank"], "arch_hash": m["arch_hash"], "status": "ok",
                       "top1_err": round(errs["top1_err"], 4), "top5_err": round(errs["top5_err"], 4),
                       "params_m": round(count_params(model) / 1e6, 4),
                       "macs_m": round(count_macs(model, (3, 32, 32)) / 1e6, 2), "layers": arch.describe()}
                rows.append(row)
                mlflow.log_metrics({f"rank{m['rank']}_top1_err": row["top1_err"],
                                    f"rank{m['rank']}_top5_err": row["top5_err"]})
            ok = [r for r in rows if r["status"] == "ok"]
            if ok:  # the headline: the network the generation stage ranked first
                mlflow.set_tag("arch_hash", ok[0]["arch_hash"])
                mlflow.log_metrics(headline(top1_err=ok[0]["top1_err"], top5_err=ok[0]["top5_err"],
                                            params_m=ok[0]["params_m"], macs_m=ok[0]["macs_m"],
                                            search_cost_s=self.search_cost_s(),
                                            train_cost_s=status.get("train_seconds"), train_epochs=status["epochs"]))
        ok = [r for r in rows if r["status"] == "ok"]
        if not ok:
            return self.not_run("not run: every fine-tuned network failed", metrics_path)
        head = ok[0]  # the network the generation stage ranked first (chosen without the test set)
        metrics = {"status": "ok", "dataset": manifest["display_name"], "top1_err": head["top1_err"],
                   "top5_err": head["top5_err"], "params_m": head["params_m"], "macs_m": head["macs_m"],
                   "arch_hash": head["arch_hash"], "rank": head["rank"], "models": rows,
                   "epochs": status["epochs"], "train_images": status["train_images"], "test_images": len(test.x),
                   "profile": self.params.profile, "hardware": hardware()}
        write_json(metrics_path, metrics)
        return metrics

    def write_report(self) -> Path:
        from nascore.report.rl import write_vgg_rl_report

        return write_vgg_rl_report(self)
