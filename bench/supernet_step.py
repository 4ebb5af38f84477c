"""GPU benchmark: one DARTS search step (alpha step on a val batch + weight step on a train batch)
of the 8-cell, C=16, 8-op supernet, for each variant side by side in one run. Prints one JSON line
per variant and appends it to reports/bench/supernet_step.json (CUDA only).

Variants: the plain-loop mixed op stepped as the original DARTS code steps it (full backward passes;
eager fp32 is the baseline of `speedup_vs_eager_fp32`), the same in bf16 + channels_last and under
torch.compile, and nascore's step (each backward computes only what its optimiser uses) with the
fused mixed op in fp32 and in bf16 + channels_last.

  python bench/supernet_step.py                          # CUDA: batch 64 and 256, first order
  python bench/supernet_step.py --order 2                # second-order step
  python bench/supernet_step.py --device cpu --batch 8 --layers 5 --C 4 --runs 3 --no-save   # smoke test

Timing: CUDA events around `--steps` steps, warm-up steps excluded, median of `--runs` runs
(wall clock on CPU); compile time (first step) reported apart as compile_s.
"""
from __future__ import annotations

import time

import torch

from _common import device_name, emit, get_device, measure_all, original_darts_step, parser, time_steps
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet

VARIANTS = {  # name: (mixed op, autocast dtype, channels_last, compile (False / True / a mode), original step)
    "eager_fp32": ("reference", None, False, False, True),
    "eager_bf16_cl": ("reference", torch.bfloat16, True, False, True),
    "compiled_fp32": ("reference", None, False, True, True),
    "loop_fp32": ("reference", None, False, False, False),  # nascore's step, plain loop: the step's share
    "fused_fp32": ("fused", None, False, False, False),
    "fused_bf16_cl": ("fused", torch.bfloat16, True, False, False),
    "fused_recompute_fp32": ("fused_recompute", None, False, False, False),  # fewer activations kept
    # the forward compiled with mode reduce-overhead: replayed as CUDA graphs (static shapes)
    "fused_bf16_cl_cudagraphs": ("fused", torch.bfloat16, True, "reduce-overhead", False),
}


def measure(variant: str, args, device: torch.device) -> dict:
    impl, dtype, cl, compiled, original = VARIANTS[variant]
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=impl).to(device)
    if cl:  # before compiling; the strategy below keeps it (and refuses bf16 + channels_last on a CPU)
        model = model.to(memory_format=torch.channels_last)
    if compiled:  # the module keeps its attributes (alphas, genotype); only forward is compiled
        model.forward = torch.compile(model.forward, mode=None if compiled is True else compiled)
    strategy = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                    epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                                    order=args.order, autocast_dtype=dtype, channels_last=cl)
    g = torch.Generator(device="cpu").manual_seed(1)
    fmt = torch.channels_last if cl else torch.contiguous_format
    batch = tuple((torch.randn(args.batch, 3, 32, 32, generator=g).to(device, memory_format=fmt),
                   torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(2))
    step = (lambda: original_darts_step(strategy, batch)) if original else (lambda: strategy.step(batch))
    compile_s = None
    if compiled:
        t0 = time.perf_counter()
        step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_s = round(time.perf_counter() - t0, 1)
    step_s, peak = time_steps(step, device, warmup=args.warmup, steps=args.steps,
                              runs=args.runs)
    return {"bench": "supernet_step", "device": device_name(device), "impl": variant, "mixed_op": impl,
            "batch": args.batch, "order": args.order, "step": "original" if original else "nascore", "layers": args.layers, "C": args.C,
            "step_s": round(step_s, 5), "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
            "compile_s": compile_s, "runs": args.runs, "steps_per_run": args.steps, "torch": torch.__version__}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    device = get_device(args.device)
    for b in args.batch:
        args.batch = b
        emit(measure_all(lambda v: measure(v, args, device), args.variants, "supernet_step"), "supernet_step",
             device, not args.no_save)


if __name__ == "__main__":
    main()
