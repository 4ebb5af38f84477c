"""GPU benchmark: one first-order DARTS search step (alpha step on a val batch + weight step on a
train batch) of the 8-cell, C=16, 8-op supernet, per mixed-op implementation, side by side in one
run. Prints one JSON line per implementation and appends it to reports/bench/supernet_step.json.

  python bench/supernet_step.py                          # CUDA: batch 64 and 256
  python bench/supernet_step.py --device cpu --batch 8 --layers 5 --C 4 --runs 3   # smoke test

Timing: CUDA events around `--steps` steps, warm-up steps excluded, median of `--runs` runs
(wall clock on CPU). Baseline = the reference loop in eager fp32, as the original DARTS code.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from nascore.ops import MIXED_OPS
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet

OUT = Path(__file__).resolve().parents[1] / "reports" / "bench" / "supernet_step.json"


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def measure(impl: str, args, device: torch.device) -> dict:
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=impl).to(device)
    strategy = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                    epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                                    order=args.order)
    g = torch.Generator(device="cpu").manual_seed(1)
    batch = tuple((torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
                   torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(2))
    for _ in range(args.warmup):
        strategy.step(batch)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(args.runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(args.steps):
                strategy.step(batch)
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000 / args.steps)
        else:
            t0 = time.perf_counter()
            for _ in range(args.steps):
                strategy.step(batch)
            times.append((time.perf_counter() - t0) / args.steps)
    step_s = statistics.median(times)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return {"bench": "supernet_step", "device": device_name(device), "impl": impl, "batch": args.batch,
            "order": args.order, "layers": args.layers, "C": args.C, "step_s": round(step_s, 5),
            "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
            "runs": args.runs, "steps_per_run": args.steps, "torch": torch.__version__}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--impl", nargs="+", default=["reference", "fused"], choices=MIXED_OPS.names())
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--no-save", action="store_true", help="print only, do not append to reports/bench/")
    args = p.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke test (numbers not for reports)")
    batches = args.batch
    for b in batches:
        args.batch = b
        rows = [measure(impl, args, device) for impl in args.impl]
        base = next((r for r in rows if r["impl"] == "reference"), None)
        for r in rows:
            r["speedup_vs_eager_fp32"] = None if base is None else round(r["images_per_s"] / base["images_per_s"], 2)
            line = json.dumps(r)
            print(line)
            if not args.no_save and device.type == "cuda":
                OUT.parent.mkdir(parents=True, exist_ok=True)
                with OUT.open("a") as f:
                    f.write(line + "\n")


if __name__ == "__main__":
    main()
