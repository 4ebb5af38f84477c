"""GPU benchmark: a whole DARTS search to its genotype, wall clock (target: 50 first-order epochs
in <= 15 minutes on one H100 / H200). The search stage's own pieces run as the stage runs them:
uint8 images resident on the device, DARTS augmentation on the device, the 50/50 S_train / S_val
split, DifferentiableSearch, the per-epoch supernet validation and genotype (SearchMonitor); no
MLflow and no checkpoint files. Synthetic pixels of CIFAR-10's shape (the compute does not depend
on them, so the genotype found says nothing). One JSON line per epoch as it ends (so a run cut short
still leaves its measurements), reports/bench/search_to_genotype.json. Every epoch is the same
work, so min_per_epoch x 50 is the 50-epoch time where a shorter run must do; min_per_epoch
includes the first epoch's warm-up and graph capture, last_epoch_min is the steady state.

  python bench/search_to_genotype.py                                   # 50 epochs, batched, bf16, NHWC, graphs
  python bench/search_to_genotype.py --impl reference_fp32 --epochs 2  # the original's settings, 2 epochs
  python bench/search_to_genotype.py --device cpu --images 64 --epochs 1 --layers 3 --C 4 --no-save
"""
from __future__ import annotations

import time

import torch

from _common import darts_strategy, device_name, emit, get_device, parser
from nascore.data.loader import PairedBatches, TensorBatches, make_transform
from nascore.strategies.darts import SearchMonitor
from nascore.supernets import DartsSupernet
from nascore.train.loop import Hook, Trainer

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
IMPLS = {  # name: (mixed op, bf16 autocast, channels_last, CUDA graphs)
    "reference_fp32": ("reference", False, False, False),
    "fused_fp32": ("fused", False, False, False),
    "fused_bf16": ("fused", True, False, False),
    "fused_bf16_cl": ("fused", True, True, False),
    "batched_fp32": ("batched", False, False, False),
    "batched_bf16_cl": ("batched", True, True, False),
    # the search stage on a GPU with mixed_op: batched and run.cuda_graphs: auto
    "batched_bf16_cl_graphs": ("batched", True, True, True),
}


class EpochLine(Hook):
    """One JSON line per epoch the moment it ends (a run cut short by its time limit still leaves
    what it measured): wall clock so far and the last epoch alone (steady state, no capture)."""

    def __init__(self, args, device: torch.device) -> None:
        self.args, self.device, self.t0 = args, device, time.perf_counter()
        self.last = self.t0

    def after_epoch(self, trainer: Trainer, metrics: dict[str, float]) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        now, a, done = time.perf_counter(), self.args, trainer.epoch  # epochs completed
        steps = done * len(trainer.batches)
        peak = torch.cuda.max_memory_allocated(self.device) / 2**20 if self.device.type == "cuda" else None
        emit({"bench": "search_to_genotype", "device": device_name(self.device), "impl": a.impl, "batch": a.batch,
              "order": a.order, "epochs": done, "of_epochs": a.epochs, "images": a.images, "layers": a.layers,
              "C": a.C, "wall_min": round((now - self.t0) / 60, 3), "min_per_epoch": round((now - self.t0) / 60 / done, 3),
              "last_epoch_min": round((now - self.last) / 60, 3), "images_per_s": round(steps * a.batch / (now - self.t0), 1),
              "peak_mem_mb_per_image": None if peak is None else round(peak / a.batch, 2),
              "val_err": round(metrics["val_err"], 2), "data": "synthetic uint8, CIFAR-10 shape",
              "torch": torch.__version__}, [], "search_to_genotype", self.device, not a.no_save)
        self.last = now


def main() -> None:
    p = parser(__doc__, steps=False, runs=False)  # one whole search, timed once
    p.add_argument("--impl", default="batched_bf16_cl_graphs", choices=list(IMPLS))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--images", type=int, default=50_000, help="training images, split 50/50 into S_train / S_val")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    args = p.parse_args()
    device = get_device(args.device)
    mixed_op, bf16, channels_last, graphs = IMPLS[args.impl]

    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (args.images,), generator=g).to(device)
    half = args.images // 2
    aug = make_transform("darts", mean=MEAN, std=STD)
    batches = PairedBatches(TensorBatches(x[:half], y[:half], args.batch, aug, shuffle=True, seed=0),
                            TensorBatches(x[half:], y[half:], args.batch, aug, shuffle=True, seed=1))
    val = TensorBatches(x[half:], y[half:], 256, make_transform("none", mean=MEAN, std=STD), shuffle=False, seed=0)
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=mixed_op).to(device)
    strategy = darts_strategy(model, order=args.order, epochs=args.epochs, autocast_dtype=torch.bfloat16 if bf16 else None,
                                    channels_last=channels_last, cuda_graphs=graphs and device.type == "cuda")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    trainer = Trainer(strategy, batches, args.epochs, seed=0, desc="search",
                      hooks=[SearchMonitor(model, val), EpochLine(args, device)])
    trainer.run()
    strategy.genotype()


if __name__ == "__main__":
    main()
