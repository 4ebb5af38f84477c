"""GPU benchmark: a whole DARTS search to its genotype, wall clock (issue 5 target: 50 first-order
epochs in <= 15 minutes on one H100). The search stage's own pieces run as the stage runs them:
uint8 images resident on the device, DARTS augmentation on the device, the 50/50 S_train / S_val
split, DifferentiableSearch, the per-epoch supernet validation and genotype (SearchMonitor); no
MLflow and no checkpoint files. Synthetic pixels of CIFAR-10's shape (the compute does not depend
on them, so the genotype found says nothing). One JSON line, reports/bench/search_to_genotype.json.
Every epoch is the same work, so min_per_epoch x 50 is the 50-epoch time where a shorter run must
do (the device tool allows 10 minutes per command); wall_min is what was measured.

  python bench/search_to_genotype.py                                   # 50 epochs, fused, bf16, NHWC
  python bench/search_to_genotype.py --impl reference_fp32 --epochs 2  # the original's settings, 2 epochs
  python bench/search_to_genotype.py --device cpu --images 64 --epochs 1 --layers 3 --C 4 --no-save
"""
from __future__ import annotations

import time

import torch

from _common import device_name, emit, get_device, parser
from nascore.data.loader import PairedBatches, TensorBatches, make_transform
from nascore.methods.darts import SearchMonitor
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet
from nascore.train.loop import Trainer

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]
IMPLS = {  # name: (mixed op, bf16 autocast, channels_last); fused_bf16_cl: the search stage on a GPU
    "reference_fp32": ("reference", False, False),
    "fused_fp32": ("fused", False, False),
    "fused_bf16": ("fused", True, False),
    "fused_bf16_cl": ("fused", True, True),
}


def main() -> None:
    p = parser(__doc__, steps=False, runs=False)  # one whole search, timed once
    p.add_argument("--impl", default="fused_bf16_cl", choices=list(IMPLS))
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--images", type=int, default=50_000, help="training images, split 50/50 into S_train / S_val")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    args = p.parse_args()
    device = get_device(args.device)
    mixed_op, bf16, channels_last = IMPLS[args.impl]

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
    strategy = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                    epochs=args.epochs, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                                    order=args.order, autocast_dtype=torch.bfloat16 if bf16 else None,
                                    channels_last=channels_last)
    trainer = Trainer(strategy, batches, args.epochs, seed=0, hooks=[SearchMonitor(model, val)], desc="search")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    t0 = time.perf_counter()
    history = trainer.run()
    genotype = strategy.genotype()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    steps = args.epochs * len(batches)
    emit([{"bench": "search_to_genotype", "device": device_name(device), "impl": args.impl, "batch": args.batch,
           "order": args.order, "epochs": args.epochs, "images": args.images, "layers": args.layers, "C": args.C,
           "wall_min": round(wall / 60, 2), "min_per_epoch": round(wall / 60 / args.epochs, 3), "images_per_s": round(steps * args.batch / wall, 1),
           "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
           "final_val_err": round(history[-1]["val_err"], 2), "genotype_cells": len(genotype.cells),
           "data": "synthetic uint8, CIFAR-10 shape", "torch": torch.__version__}],
         "search_to_genotype", device, not args.no_save)


if __name__ == "__main__":
    main()
