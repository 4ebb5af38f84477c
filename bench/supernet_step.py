"""GPU benchmark: one DARTS search step (alpha step on a val batch + weight step on a train batch)
of the 8-cell, C=16, 8-op supernet, for each variant side by side in one run. Prints one JSON line
per variant the moment it is measured and appends it to reports/bench/supernet_step.json (CUDA).

Variants: `eager_fp32`, the plain-loop mixed op stepped as the original DARTS code steps it (full
backward passes; the baseline of `speedup_vs_eager_fp32`); nascore's step (each backward computes
only what its optimiser uses) with the plain loop, the fused op and the batched cell, eager or
replayed as CUDA graphs (run.cuda_graphs), fp32 or bf16 + channels_last; torch.compile variants.

  python bench/supernet_step.py                          # CUDA: batch 64 and 256, first order
  python bench/supernet_step.py --order 2                # second-order step
  python bench/supernet_step.py --variants batched_bf16_cl_graphs --batch 64 --kernels
  python bench/supernet_step.py --device cpu --batch 8 --layers 5 --C 4 --runs 3 --no-save   # smoke test

Timing: CUDA events around `--steps` steps, warm-up steps excluded, median of `--runs` runs (wall
clock on CPU); compile or capture time (the first steps) reported apart as compile_s. `--kernels`
adds the CUDA kernels of one step (torch.profiler), their summed device time and the ATen ops it
dispatches; `--top N` the N kernels taking the most device time. Peak memory: of the timed steps, and
for a captured step of its capture too (the graphs' pool holds its activations).
"""
from __future__ import annotations

import time

import torch

from _common import darts_strategy, device_name, get_device, measure_all, original_darts_step, parser, time_steps
from nascore.perf import OpCounter
from nascore.supernets import DartsSupernet

VARIANTS = {  # name: (mixed op, autocast dtype, channels_last, compile (False / True / a mode), original, graphs)
    "eager_fp32": ("reference", None, False, False, True, False),
    "eager_bf16_cl": ("reference", torch.bfloat16, True, False, True, False),
    "compiled_fp32": ("reference", None, False, True, True, False),
    "loop_fp32": ("reference", None, False, False, False, False),  # nascore's step, plain loop: the step's share
    "fused_fp32": ("fused", None, False, False, False, False),
    "fused_bf16_cl": ("fused", torch.bfloat16, True, False, False, False),
    "fused_recompute_fp32": ("fused_recompute", None, False, False, False, False),  # fewer activations kept
    "batched_fp32": ("batched", None, False, False, False, False),   # the cell computed by source state
    "batched_bf16_cl": ("batched", torch.bfloat16, True, False, False, False),
    "batched_fp32_graphs": ("batched", None, False, False, False, True),  # + the step replayed as CUDA graphs
    "batched_bf16_cl_graphs": ("batched", torch.bfloat16, True, False, False, True),
    # fewer activations kept (stateless stages recomputed in backward), for the memory target
    "batched_recompute_bf16_cl_graphs": ("batched_recompute", torch.bfloat16, True, False, False, True),
    # the forward compiled with mode reduce-overhead: replayed as CUDA graphs (static shapes)
    "fused_bf16_cl_cudagraphs": ("fused", torch.bfloat16, True, "reduce-overhead", False, False),
}


def measure(variant: str, args, device: torch.device) -> dict:
    impl, dtype, cl, compiled, original, graphs = VARIANTS[variant]
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=impl).to(device)
    if cl:  # before compiling; the strategy below keeps it (and refuses bf16 + channels_last on a CPU)
        model = model.to(memory_format=torch.channels_last)
    if compiled:  # the module keeps its attributes (alphas, genotype); only forward is compiled
        model.forward = torch.compile(model.forward, mode=None if compiled is True else compiled)
    strategy = darts_strategy(model, order=args.order, epochs=1, autocast_dtype=dtype, channels_last=cl, cuda_graphs=graphs)
    g = torch.Generator(device="cpu").manual_seed(1)
    fmt = torch.channels_last if cl else torch.contiguous_format
    batch = tuple((torch.randn(args.batch, 3, 32, 32, generator=g).to(device, memory_format=fmt),
                   torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(2))
    step = (lambda: original_darts_step(strategy, batch)) if original else (lambda: strategy.step(batch))
    compile_s = None
    if device.type == "cuda":  # a captured step's activations live in the graphs' pool: count the capture
        torch.cuda.reset_peak_memory_stats(device)
    if compiled or (graphs and strategy.graphed):  # compile / warm-up + capture time, apart from the timing
        t0 = time.perf_counter()
        for _ in range(3 if graphs else 1):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_s = round(time.perf_counter() - t0, 1)
    extra = _counts(step, device, args.top) if args.kernels else {}
    step_s, peak = time_steps(step, device, warmup=args.warmup, steps=args.steps, runs=args.runs,
                              reset_peak=not (graphs and strategy.graphed))
    return {"bench": "supernet_step", "device": device_name(device), "impl": variant, "mixed_op": impl,
            "batch": args.batch, "order": args.order, "step": "original" if original else "nascore",
            "graphs": bool(graphs and strategy.graphed), "layers": args.layers, "C": args.C,
            "step_s": round(step_s, 5), "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
            "compile_s": compile_s, **extra, "runs": args.runs, "steps_per_run": args.steps,
            "torch": torch.__version__}


def _counts(step, device: torch.device, top: int = 0) -> dict:
    """ATen ops dispatched by one step and, on CUDA, the kernels it launched (torch.profiler): their
    number, their summed device time and, with `top`, the kernels that take the most of it."""
    step()
    with OpCounter() as ops:
        step()
    out = {"aten_ops_per_step": ops.total}
    if device.type == "cuda":
        from torch.profiler import ProfilerActivity, profile

        torch.cuda.synchronize(device)
        with profile(activities=[ProfilerActivity.CUDA]) as prof:
            step()
            torch.cuda.synchronize(device)
        kernels = [e for e in prof.events() if e.device_type.name == "CUDA"]
        out["cuda_kernels_per_step"] = len(kernels)
        by_name: dict[str, list] = {}
        for e in kernels:
            entry = by_name.setdefault(e.name, [0, 0.0])
            entry[0] += 1
            entry[1] += e.time_range.elapsed_us() / 1000
        out["kernel_ms_per_step"] = round(sum(ms for _, ms in by_name.values()), 2)
        if top:
            ranked = sorted(by_name.items(), key=lambda kv: -kv[1][1])[:top]
            out["top_kernels"] = [{"name": n[:120], "count": c, "ms": round(ms, 3)} for n, (c, ms) in ranked]
    return out


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, nargs="+", default=[64, 256])
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--kernels", action="store_true", help="also count ATen ops and CUDA kernels of one step")
    p.add_argument("--top", type=int, default=0, help="with --kernels: the N kernels taking the most device time")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    device = get_device(args.device)
    for b in args.batch:
        args.batch = b
        measure_all(lambda v: measure(v, args, device), args.variants, "supernet_step", device, not args.no_save)


if __name__ == "__main__":
    main()
