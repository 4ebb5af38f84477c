"""DARTS (Liu et al. 2019; seed 003): bi-level gradient search over the 8-op cell space.

Every number comes from params/darts.yaml; the schema below only says what is allowed.
Other DARTS-family methods subclass DartsMethod and override `build_supernet`,
`arch_regulariser` or `build_network`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import torch

from nascore.config import ParamsError, spec, to_dict
from nascore.data.loader import PairedBatches, TensorBatches, make_transform
from nascore.data.prepare import read_manifest
from nascore.data.sources import DATASETS, DataError
from nascore.evaluate.complexity import count_macs, count_params
from nascore.evaluate.metrics import topk_errors
from nascore.genotype import Genotype, load_genotype
from nascore.layout import load_checkpoint, save_atomically, write_json, write_tsv
from nascore.methods.base import METHODS, Method, genotype_tags, stage
from nascore.models.registered import NetworkSpec, log_network
from nascore.ops import MIXED_OPS, OPS
from nascore.runtime import autocast_dtype, compile_network, hardware, init_distributed, use_channels_last
from nascore.spaces.darts import CellSpace
from nascore.strategies import STRATEGIES
from nascore.supernets import SUPERNETS
from nascore.tracking import MLflowHook, log_genotype, log_prepared_input, log_to_run, start_run
from nascore.tracking.schema import headline
from nascore.train import CheckpointHook, Hook, Trainer
from nascore.train.graphs import graphs_wanted
from nascore.train.tasks import SupervisedTask


def alpha_trace(history: list[dict[str, Any]], primitives: list[str]) -> list[dict[str, Any]]:
    """The alpha traces `dvc plots` draws (reports/plots/<search>-alphas.tsv, template .dvc/plots/alphas.json):
    per search epoch, cell type and op, the op's share of the cell's architecture weights summed over its
    edges, so each cell type's shares sum to 1 per epoch. For a DARTS-family search that is softmax(alpha)
    averaged over the edges (an op an edge does not offer counts 0 there); for random_ws / enas, how often
    the sampled architectures used the op (their edges are not all used, so their weights sum to less)."""
    rows = []
    for h in history:
        for cell, edges in sorted(h["alphas"].items()):
            total = sum(map(sum, edges)) or 1.0  # no weight at all (nothing sampled yet): zeros
            rows += [{"epoch": h["epoch"], "cell": cell, "op": op, "weight": sum(e[k] for e in edges) / total}
                     for k, op in enumerate(primitives)]
    return rows


@dataclass(frozen=True)
class SupernetParams:
    C: int = spec(ge=2, doc="initial channels (paper: 16)")
    layers: int = spec(ge=3, doc="cells (paper: 8)")
    stem_multiplier: int = spec(ge=1)
    mixed_op: str = spec(doc="mixed-op implementation: reference (the plain loop), batched (the cell computed "
                             "by source state: ~1/7 of the loop's ops), batched_recompute (batched, fewer "
                             "activations kept), fused, fused_recompute, auto (fused on GPU)")
    primitives: list[str] = spec(doc="candidate ops on every edge")

    def validate(self, path: str) -> None:
        if self.mixed_op not in MIXED_OPS:
            raise ParamsError(f"{path}.mixed_op: got {self.mixed_op!r}; allowed: {', '.join(MIXED_OPS.names())}")
        for op in self.primitives:
            if op not in OPS:
                raise ParamsError(f"{path}.primitives: unknown op {op!r}; allowed: {', '.join(OPS.names())}")
        if len(set(self.primitives)) != len(self.primitives) or len(self.primitives) < 2:
            raise ParamsError(f"{path}.primitives: need >= 2 distinct ops, got {self.primitives}")


@dataclass(frozen=True)
class SearchParams:
    dataset: Literal["cifar10", "cifar100"]
    strategy: str = spec(doc="search strategy (nascore.strategies.STRATEGIES): darts = gradient-based (alpha)")
    supernet: SupernetParams = spec()
    order: Literal[1, 2] = spec(doc="1: first order (xi = 0); 2: unrolled (DARTS eq. 7)")
    epochs: int = spec(ge=1)
    batch_size: int = spec(ge=1)
    train_portion: float = spec(gt=0.0, lt=1.0, doc="share of the training set for weights")
    lr: float = spec(gt=0.0)
    lr_min: float = spec(ge=0.0)
    momentum: float = spec(ge=0.0, lt=1.0)
    weight_decay: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    arch_lr: float = spec(gt=0.0)
    arch_betas: list[float] = spec()
    arch_weight_decay: float = spec(ge=0.0)
    hvp_eps: float = spec(gt=0.0, doc="finite-difference radius of the Hessian-vector product")
    augment: Literal["darts", "seed001", "none"] = spec()
    checkpoint_every_steps: int = spec(ge=0, doc="0: only at epoch ends")

    def validate(self, path: str) -> None:
        if self.strategy not in STRATEGIES:
            raise ParamsError(f"{path}.strategy: got {self.strategy!r}; allowed: {', '.join(STRATEGIES.names())}")
        if len(self.arch_betas) != 2 or not all(0 <= b < 1 for b in self.arch_betas):
            raise ParamsError(f"{path}.arch_betas: got {self.arch_betas}; need two numbers in [0, 1)")


@dataclass(frozen=True)
class TrainParams:
    layers: int = spec(ge=3)
    C: int = spec(ge=2)
    auxiliary: bool = spec()
    auxiliary_weight: float = spec(ge=0.0)
    drop_path_prob: float = spec(ge=0.0, lt=1.0)
    epochs: int = spec(ge=1)
    batch_size: int = spec(ge=1)
    lr: float = spec(gt=0.0)
    lr_min: float = spec(ge=0.0)
    momentum: float = spec(ge=0.0, lt=1.0)
    weight_decay: float = spec(ge=0.0)
    grad_clip: float = spec(gt=0.0)
    label_smoothing: float = spec(ge=0.0, lt=1.0)
    schedule: Literal["cosine", "step"] = spec()
    decay_rate: float = spec(gt=0.0, le=1.0, doc="per-epoch factor of the step schedule")
    augment: Literal["darts", "seed001", "random_crop_flip", "none"] = spec()
    cutout_length: int = spec(ge=0)
    checkpoint_every_steps: int = spec(ge=0)


@dataclass(frozen=True)
class FinetuneParams:
    genotype: str | None = spec(doc="null: the search result; or a published name / JSON path")
    cifar: TrainParams = spec()
    imagenet: TrainParams = spec()


@dataclass(frozen=True)
class EvaluateParams:
    batch_size: int = spec(ge=1)


@dataclass(frozen=True)
class DartsParams:
    search: SearchParams
    finetune: FinetuneParams
    evaluate: EvaluateParams
    paper: dict[str, Any] = spec(default_factory=dict, doc="published numbers, for the report")


class ErrHook(Hook):
    """train_acc -> train_err (percent), the form reports use."""

    def after_epoch(self, trainer: Trainer, metrics: dict[str, Any]) -> None:
        if "train_acc" in metrics:
            metrics["train_err"] = 100.0 * (1.0 - metrics.pop("train_acc"))


@METHODS.register("darts")
class DartsMethod(Method):
    name = "darts"
    params_cls = DartsParams
    supernet = "darts"  # SUPERNETS key; a method with another supernet only changes this

    # -- pieces a DARTS-family method may override ------------------------------------------
    def space(self) -> CellSpace:
        return CellSpace(primitives=tuple(self.p.search.supernet.primitives))

    def build_supernet(self, num_classes: int) -> torch.nn.Module:
        return SUPERNETS[self.supernet].from_config(self.p.search.supernet, num_classes, self.space())

    def arch_regulariser(self):
        return None

    def run_tags(self) -> dict[str, str]:
        """Extra MLflow tags on every run of this method (e.g. a swept hyper-parameter)."""
        return {}

    def network_spec(self, genotype: Genotype, family: str, num_classes: int, tp: TrainParams) -> NetworkSpec:
        """The evaluation network as data (nascore.models.registered.NETWORKS): what build_network builds and
        the logged MLflow model rebuilds."""
        return NetworkSpec("darts", genotype.to_json(), {
            "model": "darts_cifar" if family == "cifar" else "darts_imagenet", "C": tp.C,
            "num_classes": num_classes, "layers": tp.layers, "auxiliary": tp.auxiliary})

    def lr_scheduler(self, optimizer: torch.optim.Optimizer, tp: TrainParams):
        """Fine-tuning's per-epoch lr schedule (SupervisedTask steps it); a method with another recipe overrides it."""
        return _scheduler(optimizer, tp)

    def build_network(self, genotype: Genotype, family: str, num_classes: int, tp: TrainParams):
        return self.network_spec(genotype, family, num_classes, tp).build()

    def one_level(self) -> bool:
        """True: alphas and weights learn from the same training batches (no S_val updates)."""
        return False

    def search_split(self, n: int) -> int:
        """How many of `n` training images S_train gets (the rest is S_val); a ParamsError, before any
        compute, when search.train_portion leaves either part short of what it needs."""
        p = self.p.search
        cut = int(round(n * p.train_portion))
        # bi-level: S_val is read in batches of search.batch_size; one-level: it only measures (or ranks),
        # any size will do, and a portion of 1.0 keeps none on purpose (stacnas)
        need_val = 0 if p.train_portion >= 1.0 else 1 if self.one_level() else p.batch_size
        if cut >= p.batch_size and n - cut >= need_val:
            return cut
        val_need = ("at least one image (it only measures)" if self.one_level()
                    else "one batch too (its batches are as large)")
        where = (f"params/{self.name}.yaml: search.train_portion = {p.train_portion} (profile {self.params.profile})"
                 f" splits the {n} prepared {p.dataset} training images into S_train = {cut} and S_val = {n - cut}; "
                 f"S_train needs at least one batch (search.batch_size = {p.batch_size}) and S_val {val_need}")
        lo, hi = -(-1000 * p.batch_size // n) / 1000, 1000 * (n - need_val) // n / 1000  # 3 decimals, inside
        if lo > hi:
            most = n - need_val if self.one_level() else n // 2
            raise ParamsError(f"{where}: no portion fits; lower search.batch_size to at most {most} or prepare "
                              f"more images (params/data.yaml: data.train_per_class)")
        raise ParamsError(f"{where}: set it between {lo} and {hi}, e.g. {min(max(0.5, lo), hi)} (in params/"
                          f"{self.name}.yaml, or params/profiles.yaml: {self.params.profile}.{self.name}.search."
                          f"train_portion where the profile sets it)")

    def check_data(self) -> None:
        """The checks that need the prepared data but no compute (`nascore check`): the search split;
        nothing to check where prepare has not run, or ran under other data params (it will run again)."""
        try:
            manifest = read_manifest(self.layout.prepared(self.p.search.dataset))
        except DataError:
            return
        subset = manifest.get("subset", {}).get("train_per_class")
        if manifest.get("status") == "ok" and subset == self.params.data.train_per_class:
            self.search_split(sum(manifest["counts"]["train"].values()))

    # -- stages --------------------------------------------------------------------------------
    def search(self, stage: str = "search") -> dict[str, Any]:
        self.check_stage(stage)
        return self.run_search(stage, lambda n, _train: self.build_supernet(n), self.layout.search_dir(self.name),
                               f"{self.name}-search", epochs=self.p.search.epochs)

    @stage(lambda self, stage, build, out, metrics_name, **_: out / "status.json",
           lambda self, stage, build, out, metrics_name, **_: self.layout.metrics(metrics_name))
    def run_search(self, stage: str, build: Callable[[int, TensorBatches], torch.nn.Module], out: Path,
                   metrics_name: str, *, epochs: int, fingerprint_extra: str = "",
                   on_run_start: Callable[[], None] | None = None,
                   on_outputs: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> dict[str, Any]:
        """One supernet search to a genotype: data split, strategy, checkpoints, MLflow, outputs.
        `build(num_classes, train_batches)` makes the supernet; `on_run_start()` runs inside the
        MLflow run (e.g. to log what `build` found)."""
        p, run = self.p.search, self.params.run
        metrics_path = self.layout.metrics(metrics_name)
        tensors, manifest = self.data(p.dataset)
        device = self.device()
        x_aug = tensors["train_x32"] if p.augment == "darts" else tensors["train_x"]
        y = tensors["train_y"]
        cut = self.search_split(len(y))  # before any compute: a split that leaves a part empty fails here
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(run.seed))
        tr, va = perm[:cut], perm[cut:]  # S_train for weights, S_val for alpha (search never sees test)
        cp = self.params.data.cifar
        aug = make_transform(p.augment, mean=cp.mean, std=cp.std, crop_size=32)
        plain = make_transform("none", mean=cp.mean, std=cp.std)
        train = TensorBatches(x_aug[tr].to(device), y[tr].to(device), p.batch_size, aug,
                              shuffle=True, seed=run.seed)
        # one-level: S_val (if any) only measures the supernet, it never updates anything
        batches = train if self.one_level() else PairedBatches(
            train, TensorBatches(x_aug[va].to(device), y[va].to(device), p.batch_size, aug,
                                 shuffle=True, seed=run.seed + 1))
        val_eval = TensorBatches(tensors["train_x32"][va].to(device), y[va].to(device),
                                 self.p.evaluate.batch_size, plain, shuffle=False, seed=0)
        model = build(len(tensors["classes"]), train).to(device)
        strategy = STRATEGIES[p.strategy].from_config(model, p, run, device, epochs=epochs, val_batches=val_eval,
                                                     arch_regulariser=self.arch_regulariser(),
                                                     one_level=self.one_level())
        ckpt = CheckpointHook(self.layout.checkpoints(self.name) / f"{stage}.pt",
                              self.params.fingerprint("search") + fingerprint_extra, p.checkpoint_every_steps,
                              device=device, remove_after_train=False)
        prior = ckpt.peek_extra()
        trainer = Trainer(strategy, batches, epochs, seed=run.seed,
                          hooks=[strategy.monitor(val_eval), MLflowHook(), ckpt], desc=stage)
        space = model.space
        with start_run(self.name, stage, run_id=prior.get("mlflow_run_id"),
                       params={"profile": self.params.profile, "search": to_dict(p),
                               "data": to_dict(self.params.data), "seed": run.seed},
                       tags={"stage": stage, "dataset": manifest["display_name"],
                             "profile": self.params.profile, "seed": str(run.seed),
                             **self.run_tags()}) as mlrun:
            ckpt.extra["mlflow_run_id"] = mlrun.info.run_id
            log_prepared_input(manifest, "training")  # S_train and S_val both come from the training split
            if on_run_start is not None:
                on_run_start()
            history = trainer.run()
            genotype = strategy.genotype()
            genotype = Genotype(genotype.cells, genotype.space, meta={
                "method": self.name, "stage": stage, "mlflow_run_id": mlrun.info.run_id,
                "profile": self.params.profile, "epochs": epochs, **strategy.describe(),
                "dataset": manifest["display_name"]})
            ghash = log_genotype(genotype)
            import mlflow
            mlflow.log_dict({"epochs": [{k: h[k] for k in ("epoch", "alphas", "genotype")} for h in history],
                             "primitives": list(space.primitives), "edges": space.edges()}, "alpha_history.json")
        genotype.save(out / "genotype.json")
        write_json(out / "alpha_history.json", {
            "primitives": list(space.primitives), "edges": space.edges(),
            "epochs": [{k: v for k, v in h.items()
                        if k in ("epoch", "alphas", "val_err", "entropy") or k.startswith(("skips_", "entropy_"))}
                       for h in history]})
        write_tsv(self.layout.plot(metrics_name), history, ["epoch", "train_loss", "train_err", "val_err", "entropy"])
        write_tsv(self.layout.plot(f"{metrics_name}-alphas"), alpha_trace(history, space.primitives),
                  ["epoch", "cell", "op", "weight"])
        last = history[-1]
        status = {"status": "ok", "genotype_hash": ghash, "mlflow_run_id": mlrun.info.run_id}
        write_json(out / "status.json", status)
        metrics = {"status": "ok", "genotype_hash": ghash, "train_err": round(last["train_err"], 4),
                   "train_loss": round(last["train_loss"], 6), "epochs": epochs, **strategy.describe(),
                   "supernet": {"cells": model.layers, "C": model.C},
                   "search_seconds": round(ckpt.elapsed_s(), 1), "resumed": ckpt.resumed_from is not None,
                   "dataset": manifest["display_name"], "images": {"s_train": len(tr), "s_val": len(va)},
                   "profile": self.params.profile, "hardware": hardware()}
        if "val_err" in last:
            metrics["val_err"] = round(last["val_err"], 4)
        files, extra = strategy.outputs()  # what the strategy found besides the genotype (e.g. a ranking)
        for name, content in files.items():
            write_json(out / name, content)
        metrics.update(extra)
        if on_outputs is not None:  # a method's own outputs and metrics, written before the checkpoint goes
            metrics = on_outputs(metrics)
        write_json(metrics_path, metrics)
        ckpt.remove()  # only now: a kill before this line resumes at the end and writes the same outputs
        return metrics

    def _genotype(self) -> tuple[Genotype, str | None]:
        allowed = self.space().primitives
        if self.p.finetune.genotype:
            return load_genotype(self.p.finetune.genotype, allowed), None
        status = self.require(self.layout.search_dir(self.name) / "status.json",
                              "not run: search produced no genotype")
        g = load_genotype(self.layout.search_dir(self.name) / "genotype.json", allowed)
        return g, status.get("mlflow_run_id")

    def _train_params(self, dataset: str) -> tuple[str, TrainParams]:
        family = DATASETS[dataset].family
        return family, (self.p.finetune.cifar if family == "cifar" else self.p.finetune.imagenet)

    @stage(lambda self, dataset: self.layout.finetune_dir(self.name, dataset) / "status.json")
    def finetune(self, dataset: str) -> dict[str, Any]:
        run = self.params.run
        out = self.layout.finetune_dir(self.name, dataset)
        out.mkdir(parents=True, exist_ok=True)
        family, tp = self._train_params(dataset)
        genotype, search_run = self._genotype()
        tensors, manifest = self.data(dataset)
        device = self.device()
        rank, world = init_distributed()  # under torchrun: data-parallel (DDP), each rank a share of every batch
        ddp = world > 1
        mean, std = ((self.params.data.cifar.mean, self.params.data.cifar.std) if family == "cifar"
                     else (self.params.data.imagenet.mean, self.params.data.imagenet.std))
        crop = 32 if family == "cifar" else self.params.data.imagenet.crop_size
        x = tensors["train_x32"] if tp.augment == "darts" else tensors["train_x"]
        aug = make_transform(tp.augment, mean=mean, std=std, crop_size=crop, cutout_length=tp.cutout_length)
        batches = TensorBatches(x.to(device), tensors["train_y"].to(device), tp.batch_size, aug,
                                shuffle=True, seed=run.seed, drop_last=ddp, rank=rank, world=world)
        num_classes = len(tensors["classes"])
        net = self.build_network(genotype, family, num_classes, tp).to(device)
        channels_last = use_channels_last(run, device)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        compiled = compile_network(net, run, device)
        model = net
        if ddp:
            from torch.nn.parallel import DistributedDataParallel

            model = DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
        optimizer = torch.optim.SGD(model.parameters(), tp.lr, momentum=tp.momentum,
                                    weight_decay=tp.weight_decay)
        scheduler = self.lr_scheduler(optimizer, tp)
        # CUDA graphs: one process (DDP's hooks are not captured here); reduce-overhead captures its own
        graphs = (graphs_wanted(run.cuda_graphs, device) and not ddp
                  and not (compiled and run.compile_mode == "reduce-overhead"))
        task = SupervisedTask(model, optimizer, scheduler, epochs=tp.epochs, aux_weight=tp.auxiliary_weight,
                              grad_clip=tp.grad_clip, drop_path_prob=tp.drop_path_prob,
                              label_smoothing=tp.label_smoothing, autocast_dtype=autocast_dtype(run, device),
                              channels_last=channels_last, cuda_graphs=graphs, graphs_strict=run.cuda_graphs == "on")
        ckpt = CheckpointHook(self.layout.checkpoints(self.name) / f"finetune-{dataset}.pt",
                              self.params.fingerprint("finetune") + genotype.canonical_hash() + f"x{world}",
                              tp.checkpoint_every_steps, device=device, data_parallel=ddp,
                              remove_after_train=False)
        prior = ckpt.peek_extra()
        trainer = Trainer(task, batches, tp.epochs, seed=run.seed, data_parallel=ddp, desc=f"finetune {dataset}",
                          hooks=[ErrHook(), *([MLflowHook()] if rank == 0 else []), ckpt])
        if rank != 0:  # a DDP worker: trains its share, rank 0 logs and writes
            trainer.run()
            ckpt.remove()  # the barrier inside pairs with rank 0's
            return {"status": "ok", "worker": rank}
        params_m = count_params(net) / 1e6
        macs_m = count_macs(net, (3, crop, crop)) / 1e6
        with start_run(self.name, f"finetune-{dataset}", run_id=prior.get("mlflow_run_id"),
                       params={"profile": self.params.profile, "train": to_dict(tp), "seed": run.seed},
                       tags={**genotype_tags(genotype, stage="finetune", dataset=manifest["display_name"],
                                             profile=self.params.profile, seed=run.seed),
                             **self.run_tags(),
                             **({"search_run_id": search_run} if search_run else {})}) as mlrun:
            ckpt.extra["mlflow_run_id"] = mlrun.info.run_id
            log_genotype(genotype)
            log_prepared_input(manifest, "training")
            import mlflow
            mlflow.log_metrics({"params_m": params_m, "macs_m": macs_m})
            history = trainer.run()
            # the trained network as a model that can be registered (rebuilt from its genotype on load)
            log_network(net, self.network_spec(genotype, family, num_classes, tp), image_shape=(3, crop, crop),
                        num_classes=num_classes, mean=mean, std=std,
                        tags={"genotype_hash": genotype.canonical_hash(), "dataset": manifest["display_name"]})
        save_atomically({"state_dict": net.state_dict(), "genotype": genotype.to_json(), "family": family,
                    "num_classes": num_classes, "train": to_dict(tp)}, out / "model.pt")
        status = {"status": "ok", "mlflow_run_id": mlrun.info.run_id, "genotype_hash": genotype.canonical_hash(),
                  "dataset": manifest["display_name"], "epochs": tp.epochs, "train_seconds": round(ckpt.elapsed_s(), 1),
                  "train_err": round(history[-1]["train_err"], 4), "train_images": len(batches.x),
                  "processes": world, "compiled": compiled, "cuda_graphs": graphs}
        write_json(out / "status.json", status)
        ckpt.remove()  # only now: a kill before this line resumes at the end and writes the same outputs
        return status

    @stage(lambda self, dataset: self.layout.metrics(f"{self.name}-{dataset}"))
    def evaluate(self, dataset: str) -> dict[str, Any]:
        run = self.params.run
        metrics_path = self.layout.metrics(f"{self.name}-{dataset}")
        status = self.require(self.layout.finetune_dir(self.name, dataset) / "status.json", "not run")
        family, tp = self._train_params(dataset)
        device = self.device()
        rank, world = init_distributed()  # under torchrun: each rank scores a share of the test set
        tensors, manifest = self.data(dataset)
        saved = load_checkpoint(self.layout.finetune_dir(self.name, dataset) / "model.pt", map_location=device)
        genotype = Genotype.from_json(saved["genotype"], self.space().primitives)
        model = self.build_network(genotype, family, saved["num_classes"], tp).to(device)
        model.load_state_dict(saved["state_dict"])
        mean, std = ((self.params.data.cifar.mean, self.params.data.cifar.std) if family == "cifar"
                     else (self.params.data.imagenet.mean, self.params.data.imagenet.std))
        test = TensorBatches(tensors["test_x"].to(device), tensors["test_y"].to(device),
                             self.p.evaluate.batch_size, make_transform("none", mean=mean, std=std),
                             shuffle=False, seed=0, rank=rank, world=world)
        errs = topk_errors(model, test, ks=(1, 5), data_parallel=world > 1)
        if rank != 0:
            return {"status": "ok", "worker": rank}
        side = tensors["test_x"].shape[-1]
        metrics = {"status": "ok", "dataset": manifest["display_name"], "top1_err": round(errs["top1_err"], 4),
                   "top5_err": round(errs["top5_err"], 4), "params_m": round(count_params(model) / 1e6, 4),
                   "macs_m": round(count_macs(model, (3, side, side)) / 1e6, 2),
                   "genotype_hash": genotype.canonical_hash(), "epochs": status["epochs"],
                   "train_images": status["train_images"], "test_images": len(test.x),
                   "input": side, "layers": tp.layers, "C": tp.C, "profile": self.params.profile, "hardware": hardware()}
        import mlflow
        # nested under the finetune run, which stays closed: its duration is the fine-tuning's alone
        with start_run(self.name, f"evaluate-{dataset}", parent_run_id=status["mlflow_run_id"],
                       params={"profile": self.params.profile, "evaluate": to_dict(self.p.evaluate),
                               "seed": run.seed},
                       tags={**genotype_tags(genotype, stage="evaluate", dataset=manifest["display_name"],
                                             finetune_run_id=status["mlflow_run_id"], seed=run.seed,
                                             profile=self.params.profile),
                             **self.run_tags()}):
            log_prepared_input(manifest, "test")
            mlflow.log_metrics(headline(top1_err=metrics["top1_err"], top5_err=metrics["top5_err"],
                                        params_m=metrics["params_m"], macs_m=metrics["macs_m"],
                                        search_cost_s=self.search_cost_s(),
                                        train_cost_s=status.get("train_seconds"), train_epochs=status["epochs"]))
        log_to_run(status["mlflow_run_id"], {f"test_{k}": metrics[k] for k in ("top1_err", "top5_err")})
        write_json(metrics_path, metrics)
        return metrics


def _scheduler(optimizer: torch.optim.Optimizer, tp: TrainParams):
    from timm.scheduler import CosineLRScheduler, StepLRScheduler

    if tp.schedule == "cosine":
        return CosineLRScheduler(optimizer, t_initial=tp.epochs, lr_min=tp.lr_min, t_in_epochs=True)
    return StepLRScheduler(optimizer, decay_t=1, decay_rate=tp.decay_rate, t_in_epochs=True)
