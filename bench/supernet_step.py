"""GPU benchmark: one first-order DARTS search step (alpha step on a val batch + weight step on a
train batch) of the 8-cell, C=16, 8-op supernet, per mixed-op implementation, side by side in one
run. Prints one JSON line per implementation and appends it to reports/bench/supernet_step.json.

  python bench/supernet_step.py                          # CUDA: batch 64 and 256
  python bench/supernet_step.py --device cpu --batch 8 --layers 5 --C 4 --runs 3   # smoke test

Timing: CUDA events around `--steps` steps, warm-up steps excluded, median of `--runs` runs
(wall clock on CPU). Baseline = the reference loop in eager fp32, as the original DARTS code.
"""
from __future__ import annotations


import torch

from _common import device_name, emit, get_device, parser, time_steps
from nascore.ops import MIXED_OPS
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet


def measure(impl: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=impl).to(device)
    strategy = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                    epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                                    order=args.order)
    g = torch.Generator(device="cpu").manual_seed(1)
    batch = tuple((torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
                   torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(2))
    step_s, peak = time_steps(lambda: strategy.step(batch), device, warmup=args.warmup, steps=args.steps,
                              runs=args.runs)
    return {"bench": "supernet_step", "device": device_name(device), "impl": impl, "batch": args.batch,
            "order": args.order, "layers": args.layers, "C": args.C, "step_s": round(step_s, 5),
            "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
            "runs": args.runs, "steps_per_run": args.steps, "torch": torch.__version__}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--impl", nargs="+", default=["reference", "fused"], choices=MIXED_OPS.names())
    args = p.parse_args()
    device = get_device(args.device)
    for b in args.batch:
        args.batch = b
        emit([measure(impl, args, device) for impl in args.impl], "supernet_step", device, not args.no_save)


if __name__ == "__main__":
    main()
