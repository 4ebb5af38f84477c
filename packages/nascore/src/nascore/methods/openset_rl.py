"""openset_rl (seed 000, Fujitsu US 2020/0082275 A1): RL search over block units for
open-set recognition. Children train with L = L_softmax + eta * L_center (eq. 1) and are
rewarded with R = Acc + rho * Fd on the validation set (eq. 2); the best architecture of each
variant (eta, rho from params: the full method and its ablations) is then trained on the known
classes of every open-set split and evaluated on known + unknown test images.

Stages (dvc.yaml): rl_search (every variant) -> openset_finetune (per protocol: the best
architecture of each variant on each split's known classes) -> openset_evaluate (closed-set
accuracy, AUROC and OSCR of the max-softmax and center-distance scores) -> openset_report.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nascore.config import ParamsError, spec, to_dict
from nascore.data.loader import TensorBatches, make_transform
from nascore.data.prepare import NotRun, load_prepared
from nascore.evaluate.complexity import count_macs, count_params
from nascore.evaluate.openset import collect, feature_distribution_score, open_set_metrics
from nascore.layout import load_checkpoint, read_json, save_atomically, write_json, write_tsv
from nascore.methods.base import METHODS, Timer, stage
from nascore.methods.darts import EvaluateParams
from nascore.methods.rl_base import ControllerMethod, ControllerParams, TrainingParams, publish, seed_of
from nascore.runtime import autocast_dtype, compile_network, hardware
from nascore.spaces.block import BLOCK_OPS, BlockArchitecture, BlockGrammar, BlockNet
from nascore.tracking import log_prepared_input, log_to_run, start_run
from nascore.models.registered import NetworkSpec, log_network
from nascore.tracking.schema import headline as schema_headline
from nascore.train.center_loss import CenterLoss, CenterLossTask
from nascore.train.child import train_network

PROTOCOLS = ("cifar10_osr", "cifar_plus10")


@dataclass(frozen=True)
class IntegrationParams:
    kernel: int = spec(ge=1)
    stride: int = spec(ge=1)
    widen: int = spec(ge=1, doc="channel multiplier of each feature integration conv")


@dataclass(frozen=True)
class BlockSpaceParams:
    ops: list[str] = spec(doc="candidate ops per layer (para. 0056; extended set para. 0057)")
    layers: int = spec(ge=1, doc="M: layers per block unit")
    blocks: int = spec(ge=1, doc="N: block units, each followed by a feature integration layer")
    shared: bool = spec(doc="one sampled structure for every block (para. 0068) or one per block")
    C: int = spec(ge=1, doc="channels of Conv0 and the first block")
    embedding: int = spec(ge=2, doc="dimension of the feature the center loss acts on")
    integration: IntegrationParams = spec()

    def validate(self, path: str) -> None:
        for op in self.ops:
            if op not in BLOCK_OPS:
                raise ParamsError(f"{path}.ops: unknown op {op!r}; allowed: {', '.join(BLOCK_OPS.names())}")


@dataclass(frozen=True)
class VariantParams:
    name: str
    eta: float = spec(ge=0.0, doc="weight of the center loss in the child loss (eq. 1)")
    rho: float = spec(ge=0.0, doc="weight of Fd in the reward (eq. 2)")


@dataclass(frozen=True)
class OpensetSearchParams:
    dataset: str = spec(doc="cifar10: searched on its known classes only")
    known_classes: list[int] = spec(doc="classes the search sees (split 0 of the cifar10 protocol)")
    val_fraction: float = spec(gt=0.0, lt=1.0)
    iterations: int = spec(ge=1)
    children: int = spec(ge=1)
    failed_reward: float = spec()
    reward_threshold: float | None = spec()
    center_alpha: float = spec(gt=0.0, le=1.0, doc="center update rate (Wen et al. 2016: 0.5)")
    variants: list[VariantParams] = spec(doc="the method and its ablations, each searched on its own")
    child: TrainingParams = spec()

    def validate(self, path: str) -> None:
        names = [v.name for v in self.variants]
        if not names or len(set(names)) != len(names):
            raise ParamsError(f"{path}.variants: need at least one variant with distinct names, got {names}")
        if len(set(self.known_classes)) < 2 or len(set(self.known_classes)) != len(self.known_classes):
            raise ParamsError(f"{path}.known_classes: need >= 2 distinct classes, got {self.known_classes}")


@dataclass(frozen=True)
class ProtocolParams:
    cifar10_osr: list[list[int]] = spec(doc="known CIFAR-10 classes per split; the other classes are unknown")
    cifar_plus10_known: list[list[int]] = spec(doc="known CIFAR-10 classes per split")
    cifar_plus10_unknown: list[list[int]] = spec(doc="unknown CIFAR-100 classes per split")
    source: str = spec("", doc="where the splits come from")

    def validate(self, path: str) -> None:
        if len(self.cifar_plus10_known) != len(self.cifar_plus10_unknown):
            raise ParamsError(f"{path}: cifar_plus10_known and cifar_plus10_unknown need one entry per split")
        for i, s in enumerate(self.cifar10_osr + self.cifar_plus10_known):
            if any(c not in range(10) for c in s) or len(set(s)) != len(s):
                raise ParamsError(f"{path}: split {i}: CIFAR-10 classes must be distinct in 0..9, got {s}")


@dataclass(frozen=True)
class OpensetFinetuneParams:
    protocols: ProtocolParams
    train: TrainingParams


@dataclass(frozen=True)
class OpensetRlParams:
    space: BlockSpaceParams
    controller: ControllerParams
    search: OpensetSearchParams
    finetune: OpensetFinetuneParams
    evaluate: EvaluateParams
    paper: dict[str, Any] = spec(default_factory=dict)


def _select(x: torch.Tensor, y: torch.Tensor, classes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images of `classes`, relabelled 0..len(classes)-1 in the listed order."""
    lut = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    lut[torch.tensor(classes)] = torch.arange(len(classes))
    keep = lut[y] >= 0
    return x[keep], lut[y[keep]]


@METHODS.register("openset_rl")
class OpensetRlMethod(ControllerMethod):
    name = "openset_rl"
    params_cls = OpensetRlParams
    # seed variance: the AUROC of the method's own score (distance to the center-loss centers), of the
    # variant params name first, on the cifar10_osr splits
    variance_metric = ("auroc_center_distance", "higher")
    hash_key = "arch_hash"

    def variance_dataset(self) -> str:
        dataset = self.params.run.variance.dataset
        if dataset != "cifar10":
            raise ParamsError(f"run.variance.dataset: {self.name}'s known classes are CIFAR-10's (protocol "
                              f"cifar10_osr), got {dataset!r}; set run.variance.dataset: cifar10")
        return "cifar10_osr"

    def variance_record(self, result: dict[str, Any]) -> dict[str, Any]:
        head = result["headline_variant"]
        if result["variants"].get(head, {}).get("status") != "ok":
            raise NotRun(f"not run: the {head} variant's search found no network to train ("
                         f"{result['variants'].get(head, {}).get('reason', 'no result')})")
        trained = read_json(self.layout.metrics(f"{self.name}-search"))["variants"][head]["best"]  # what finetune trained
        return {**{k: result[k] for k in ("auroc_center_distance", "auroc_msp", "closed_acc")},
                "params_m": result["variants"][head]["params_m"], "arch_hash": trained["arch_hash"]}

    def grammar(self) -> BlockGrammar:
        s = self.p.space
        return BlockGrammar(s.ops, s.layers, s.blocks, s.shared)

    def network(self, arch: BlockArchitecture, num_classes: int) -> BlockNet:
        return self.network_spec(arch.to_json(), num_classes).build()

    def network_spec(self, arch: dict[str, Any], num_classes: int) -> NetworkSpec:
        """The network as data (nascore.models.registered.NETWORKS): what `network` builds and the logged
        MLflow model rebuilds."""
        s = self.p.space
        return NetworkSpec("block", arch, {"num_classes": num_classes, "C": s.C, "embedding": s.embedding,
                                           "integration_kernel": s.integration.kernel,
                                           "integration_stride": s.integration.stride,
                                           "widen": s.integration.widen})

    def _batches(self, x, y, tp: TrainingParams, device, train: bool) -> TensorBatches:
        """Training batches (augmented, shuffled) or evaluation batches (plain, in order)."""
        cp = self.params.data.cifar
        t = make_transform(tp.augment if train else "none", mean=cp.mean, std=cp.std, crop_size=32)
        bs = tp.batch_size if train else self.p.evaluate.batch_size
        return TensorBatches(x.to(device), y.to(device), bs, t, shuffle=train, seed=self.params.run.seed)

    def train_child(self, arch: BlockArchitecture, tp: TrainingParams, train, num_classes: int, eta: float,
                    tag: str, fingerprint: str, device,
                    final: bool = False) -> tuple[dict[str, Any], BlockNet, CenterLoss]:
        """L_softmax + eta L_center (eq. 1); a diverged child comes back with status failed. final: a
        fine-tuning, compiled per run.compile (search children are short and stay eager)."""
        torch.manual_seed(seed_of(self.params.run.seed, tag))
        model = self.network(arch, num_classes).to(device)
        if final:
            compile_network(model, self.params.run, device)
        center = CenterLoss(num_classes, self.p.space.embedding, self.p.search.center_alpha).to(device)
        auto = autocast_dtype(self.params.run, device)
        rec = train_network(model, train, epochs=tp.epochs, lr=tp.lr, momentum=tp.momentum,
                            weight_decay=tp.weight_decay, grad_clip=tp.grad_clip, milestones=tp.milestones,
                            gamma=tp.gamma, seed=seed_of(self.params.run.seed, tag),
                            ckpt_path=self.layout.checkpoints(self.name) / f"{tag}.pt",
                            fingerprint=fingerprint + arch.canonical_hash(),
                            checkpoint_every_steps=tp.checkpoint_every_steps, autocast=auto, desc=tag,
                            make_task=lambda m, o, s: CenterLossTask(m, o, s, center, eta=eta, grad_clip=tp.grad_clip,
                                                                     autocast_dtype=auto))
        rec.update(arch=arch.to_json(), arch_hash=arch.canonical_hash())
        return rec, model, center

    # -- search ----------------------------------------------------------------------------------
    @stage(lambda self, *_: self.layout.search_dir(self.name) / "status.json",
           lambda self, *_: self.layout.metrics(f"{self.name}-search"))
    def search(self, stage: str = "search") -> dict[str, Any]:
        self.check_stage(stage)
        p, run = self.p.search, self.params.run
        out, metrics_path = self.layout.search_dir(self.name), self.layout.metrics(f"{self.name}-search")
        tensors, manifest = self.data(p.dataset)
        device = self.device()
        x, y = _select(tensors["train_x"] if p.child.augment == "seed001" else tensors["train_x32"],
                       tensors["train_y"], p.known_classes)
        x32, _ = _select(tensors["train_x32"], tensors["train_y"], p.known_classes)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(run.seed))
        n_val = max(1, int(round(len(y) * p.val_fraction)))
        va, tr = perm[:n_val], perm[n_val:]
        train = self._batches(x[tr], y[tr], p.child, device, True)
        val = self._batches(x32[va], y[va], p.child, device, False)
        k = len(p.known_classes)
        grammar = self.grammar()
        results: dict[str, Any] = {}
        curves: dict[int, dict[str, Any]] = {}  # iteration -> each variant's mean reward (the plot's rows)
        for v in p.variants:
            fingerprint = self.params.fingerprint("space", "controller", "search") + v.name

            def evaluate_child(tokens: list[int], cid: str, v=v, fingerprint=fingerprint) -> dict[str, Any]:
                arch = grammar.architecture(tokens)
                rec, model, center = self.train_child(arch, p.child, train, k, v.eta, f"{v.name}-child-{cid}",
                                                      fingerprint, device)
                if rec["status"] == "ok":  # R = Acc + rho Fd on the validation set (eq. 2)
                    got = collect(model, val)
                    acc = float((got["logits"].argmax(1) == got["labels"]).double().mean())
                    fd = feature_distribution_score(got["features"], got["labels"], center.centers)
                    if math.isfinite(fd):
                        rec.update(val_acc=acc, fd=fd, reward=acc + v.rho * fd)
                    else:
                        rec.update(status="failed", reason=f"feature distribution score is {fd}: features diverged")
                return rec

            res = self.run_controller(
                key=v.name, grammar=grammar, search=p, fingerprint=fingerprint, evaluate_child=evaluate_child,
                describe=lambda rec: BlockArchitecture.from_json(rec["arch"]).describe(), start_ids=None,
                mlflow_params={"space": to_dict(self.p.space), "search": to_dict(p), "variant": to_dict(v)},
                tags={"dataset": manifest["display_name"], "variant": v.name, "eta": str(v.eta), "rho": str(v.rho)},
                manifest=manifest)
            if res is None:
                continue
            ok = [r for r in res["records"] if r["status"] == "ok"]
            best = max(ok, key=lambda r: (r["reward"], -r["iteration"])) if ok else None
            vdir = out / v.name
            vdir.mkdir(parents=True, exist_ok=True)
            write_json(vdir / "children.json", {"children": res["records"], "iterations": res["searcher"].iteration_log,
                                                "vocab": list(grammar.vocab)})
            if best is not None:
                write_json(vdir / "architecture.json", best["arch"])
            for entry in res["searcher"].iteration_log:
                row = curves.setdefault(entry["iteration"], {"iteration": entry["iteration"]})
                row[f"reward_mean_{v.name}"] = entry["reward_mean"]
                if v is p.variants[0]:  # the method itself (the first variant): the curve `dvc plots` draws
                    row["reward_mean"] = entry["reward_mean"]
            results[v.name] = {**res["summary"], "eta": v.eta, "rho": v.rho, "search_seconds": res["seconds"],
                               "iterations": res["searcher"].iteration, "resumed": res["searcher"].resumed,
                               "mlflow_run_id": res["mlflow_run_id"],
                               "best": ({k2: best[k2] for k2 in ("arch_hash", "reward", "val_acc", "fd", "child")}
                                        if best else None),
                               "best_architecture": (BlockArchitecture.from_json(best["arch"]).describe()
                                                     if best else None)}
        if not results:  # a worker rank under torchrun
            return {"status": "ok", "worker": True}
        write_json(out / "status.json", {"status": "ok", "variants": list(results)})
        write_tsv(self.layout.plot(f"{self.name}-search"), [curves[i] for i in sorted(curves)],
                  ["iteration", "reward_mean", *(f"reward_mean_{v.name}" for v in p.variants)])
        metrics = {"status": "ok", "variants": results, "known_classes": p.known_classes,
                   "children_per_iteration": p.children, "controller": self.p.controller.update,
                   "dataset": manifest["display_name"], "images": {"train": len(tr), "val": len(va)},
                   "search_seconds": round(sum(r["search_seconds"] for r in results.values()), 1),
                   "profile": self.params.profile, "hardware": hardware()}
        write_json(metrics_path, metrics)
        for v in p.variants:  # only now: a kill before this line resumes and writes the same outputs
            self.layout.checkpoints(self.name).joinpath(f"controller_{v.name}.pt").unlink(missing_ok=True)
        return metrics

    # -- open-set protocols ----------------------------------------------------------------------
    def _protocol(self, protocol: str) -> list[dict[str, Any]]:
        pp = self.p.finetune.protocols
        if protocol == "cifar10_osr":
            return [{"known": s, "unknown": [c for c in range(10) if c not in s], "unknown_dataset": "cifar10"}
                    for s in pp.cifar10_osr]
        if protocol == "cifar_plus10":
            return [{"known": k, "unknown": u, "unknown_dataset": "cifar100"}
                    for k, u in zip(pp.cifar_plus10_known, pp.cifar_plus10_unknown)]
        raise ParamsError(f"{self.name}: unknown protocol {protocol!r}; allowed: {', '.join(PROTOCOLS)}")

    @stage(lambda self, dataset: self.layout.finetune_dir(self.name, dataset) / "status.json")
    def finetune(self, dataset: str) -> dict[str, Any]:
        """The best architecture of every variant trained on each split's known classes."""
        splits = self._protocol(dataset)
        tp = self.p.finetune.train
        out = self.layout.finetune_dir(self.name, dataset)
        out.mkdir(parents=True, exist_ok=True)
        self.require(self.layout.search_dir(self.name) / "status.json", "not run: no search result")
        tensors, manifest = self.data("cifar10")
        if splits[0]["unknown_dataset"] != "cifar10":  # unknown images live in another dataset
            load_prepared(self.layout.prepared(splits[0]["unknown_dataset"]), verify=False)
        device = self.device()
        fingerprint = self.params.fingerprint("finetune") + dataset
        ckdir = self.layout.checkpoints(self.name) / f"finetune-{dataset}"
        ckdir.mkdir(parents=True, exist_ok=True)
        x_all = tensors["train_x"] if tp.augment == "seed001" else tensors["train_x32"]
        done = []
        with start_run(self.name, f"finetune-{dataset}", params={"finetune": to_dict(self.p.finetune)},
                       tags={"stage": "finetune", "dataset": dataset, "profile": self.params.profile}) as mlrun:
            log_prepared_input(manifest, "training")  # each split's known classes
            with Timer() as t:
                for v in self.p.search.variants:
                    arch_path = self.layout.search_dir(self.name) / v.name / "architecture.json"
                    if not arch_path.is_file():
                        done.append({"variant": v.name, "status": "not run", "reason": "the search found no child"})
                        continue
                    arch = BlockArchitecture.from_json(read_json(arch_path))
                    for i, split in enumerate(splits):
                        fname = f"{v.name}-split{i}.pt"
                        key = fingerprint + arch.canonical_hash() + str(split["known"])
                        saved = load_checkpoint(ckdir / fname) if (ckdir / fname).is_file() else {}
                        if saved.get("fingerprint") != key:
                            x, y = _select(x_all, tensors["train_y"], split["known"])
                            rec, model, center = self.train_child(
                                arch, tp, self._batches(x, y, tp, device, True), len(split["known"]), v.eta,
                                f"finetune-{dataset}-{v.name}-split{i}", fingerprint, device, final=True)
                            saved = {"fingerprint": key, "state_dict": model.state_dict(), "centers": center.centers,
                                     "arch": arch.to_json(), "split": split, "num_classes": len(split["known"]),
                                     "record": {k: rec.get(k) for k in ("status", "reason", "epochs", "params")}}
                            save_atomically(saved, ckdir / fname)
                        done.append({"variant": v.name, "split": i, "file": fname, **saved["record"]})
            for m in done:  # each trained network as a model that can be registered (outside train_seconds)
                if m.get("status") == "ok":
                    saved = load_checkpoint(ckdir / m["file"])
                    log_network(saved["state_dict"], self.network_spec(saved["arch"], saved["num_classes"]),
                                image_shape=(3, 32, 32), num_classes=saved["num_classes"],
                                mean=self.params.data.cifar.mean, std=self.params.data.cifar.std,
                                name=f"{m['variant']}-split{m['split']}",
                                tags={"variant": m["variant"], "split": str(m["split"]), "protocol": dataset,
                                      "arch_hash": BlockArchitecture.from_json(saved["arch"]).canonical_hash()})
        publish(done, ckdir, out)
        status = {"status": "ok", "protocol": dataset, "mlflow_run_id": mlrun.info.run_id, "models": done,
                  "epochs": tp.epochs, "train_seconds": round(t.seconds, 1), "dataset": manifest["display_name"]}
        write_json(out / "status.json", status)
        return status

    @stage(lambda self, dataset: self.layout.metrics(f"{self.name}-{dataset}"))
    def evaluate(self, dataset: str) -> dict[str, Any]:
        """Closed-set accuracy, AUROC and OSCR per variant, mean and std over the splits."""
        metrics_path = self.layout.metrics(f"{self.name}-{dataset}")
        fdir = self.layout.finetune_dir(self.name, dataset)
        status = self.require(fdir / "status.json", "not run")
        device = self.device()
        known_t, known_manifest = self.data("cifar10")
        splits = self._protocol(dataset)
        unknown_t, unknown_manifest = ((known_t, known_manifest) if splits[0]["unknown_dataset"] == "cifar10"
                                       else load_prepared(self.layout.prepared(splits[0]["unknown_dataset"])))
        tp = self.p.finetune.train
        per_variant: dict[str, list[dict[str, Any]]] = {}
        import mlflow

        with start_run(self.name, f"evaluate-{dataset}", parent_run_id=status["mlflow_run_id"],
                       params={"profile": self.params.profile, "evaluate": to_dict(self.p.evaluate),
                               "seed": self.params.run.seed},
                       tags={"stage": "evaluate", "dataset": dataset, "profile": self.params.profile,
                             "seed": str(self.params.run.seed), "finetune_run_id": status["mlflow_run_id"]}) as mlrun:
            log_prepared_input(known_manifest, "test")
            if unknown_manifest is not known_manifest:  # CIFAR+10: the unknown images come from CIFAR-100
                log_prepared_input(unknown_manifest, "test", tags={"classes_role": "unknown"})
            for m in status["models"]:
                if m.get("status") != "ok":
                    per_variant.setdefault(m["variant"], [])
                    continue
                saved = load_checkpoint(fdir / m["file"], map_location=device)
                split = saved["split"]
                model = self.network(BlockArchitecture.from_json(saved["arch"]), saved["num_classes"]).to(device)
                model.load_state_dict(saved["state_dict"])
                kx, ky = _select(known_t["test_x"], known_t["test_y"], split["known"])
                ux, uy = _select(unknown_t["test_x"], unknown_t["test_y"], split["unknown"])
                known = collect(model, self._batches(kx, ky, tp, device, False))
                unknown = collect(model, self._batches(ux, uy, tp, device, False))
                met = open_set_metrics(known, unknown, saved["centers"].to(device))
                met.update(split=m["split"], known_images=len(ky), unknown_images=len(uy),
                           params_m=round(count_params(model) / 1e6, 4),
                           macs_m=round(count_macs(model, tuple(kx.shape[1:])) / 1e6, 2))
                per_variant.setdefault(m["variant"], []).append(met)
                mlflow.log_metrics({f"openset_{m['variant']}_split{m['split']}_{k}": v for k, v in met.items()
                                    if k.startswith(("auroc", "oscr", "closed"))})
        summary = {}
        for name, rows in per_variant.items():
            if not rows:
                summary[name] = {"status": "not run", "reason": "the search found no child"}
                continue
            agg = {"status": "ok", "splits": len(rows), "params_m": rows[0]["params_m"], "macs_m": rows[0]["macs_m"]}
            for k in rows[0]:
                if k.startswith(("auroc", "oscr", "closed")):
                    vals = torch.tensor([r[k] for r in rows], dtype=torch.double)
                    agg[k] = round(float(vals.mean()), 4)
                    agg[f"{k}_std"] = round(float(vals.std()) if len(vals) > 1 else 0.0, 4)
            agg["per_split"] = rows
            summary[name] = agg
        head = self.p.search.variants[0].name  # the method as params define it; the rest are ablations
        headline = {k: v for k, v in summary.get(head, {}).items()
                    if k.startswith(("auroc", "oscr", "closed")) and not k.endswith("_std")}
        h = summary.get(head, {})
        if h.get("status") == "ok":  # the schema's headline: the closed-set errors of the method's own variant
            log_to_run(mlrun.info.run_id, {**schema_headline(
                top1_err=100 * (1 - h["closed_acc"]), top5_err=100 * (1 - h["closed_top5_acc"]),
                params_m=h["params_m"], macs_m=h["macs_m"], search_cost_s=self.search_cost_s(),
                train_cost_s=status.get("train_seconds"), train_epochs=status["epochs"]),
                **{f"openset_{k}": v for k, v in headline.items()}})
        metrics = {"status": "ok", "protocol": dataset, "headline_variant": head, **headline,
                   "variants": summary, "epochs": status["epochs"],
                   "known_dataset": known_manifest["display_name"], "profile": self.params.profile,
                   "hardware": hardware()}
        write_json(metrics_path, metrics)
        return metrics

    def write_report(self) -> Path:
        from nascore.report.rl import write_openset_report

        return write_openset_report(self)
