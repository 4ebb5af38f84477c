"""GPU benchmark: training step of the derived DARTS_V2 CIFAR network (20 cells, C=36, auxiliary
head, batch 96), eager fp32 (the original train.py) beside the fast path variants (bf16 +
channels_last, the step replayed as a CUDA graph, torch.compile), in one run. Prints one JSON line
per variant as it is measured, appends them to reports/bench/derived_train.json on CUDA.

  python bench/derived_train.py
  python bench/derived_train.py --device cpu --layers 5 --C 8 --batch 8 --runs 2 --variants eager_fp32 bf16_cl
"""
from __future__ import annotations

import time

import torch
from timm.scheduler import CosineLRScheduler

from _common import device_name, get_device, measure_all, parser, time_steps
from nascore.genotype import load_genotype
from nascore.models import create_model
from nascore.train.tasks import SupervisedTask

VARIANTS = {  # name: (autocast dtype, channels_last, torch.compile: False / True / a mode, CUDA graphs)
    "eager_fp32": (None, False, False, False),
    "bf16_cl": (torch.bfloat16, True, False, False),
    "fp32_graphs": (None, False, False, True),  # run.cuda_graphs: the step replayed as a CUDA graph
    "bf16_cl_graphs": (torch.bfloat16, True, False, True),
    "bf16_cl_compiled": (torch.bfloat16, True, True, False),  # run.compile: on (as the fine-tuning stage does it)
    "bf16_cl_cudagraphs": (torch.bfloat16, True, "reduce-overhead", False),  # run.compile_mode: reduce-overhead
}


def measure(variant: str, args, device: torch.device) -> dict:
    dtype, cl, compiled, graphs = VARIANTS[variant]
    torch.manual_seed(0)
    model = create_model("darts_cifar", genotype=load_genotype("darts_v2"), C=args.C, num_classes=10,
                         layers=args.layers, auxiliary=True).to(device)
    if cl:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), 0.025, momentum=0.9, weight_decay=3e-4)
    sched = CosineLRScheduler(opt, t_initial=2, lr_min=0.0, t_in_epochs=True)  # as the fine-tuning stage
    task = SupervisedTask(model, opt, sched, epochs=2, aux_weight=0.4, grad_clip=5.0, drop_path_prob=0.2,
                          autocast_dtype=dtype, channels_last=cl, cuda_graphs=graphs and device.type == "cuda")
    task.new_epoch(1)  # mid-training: drop-path on (p = 0.1), as in most of train.py's epochs
    compile_s = None
    if compiled:  # in place, as nascore.runtime.compile_network does in the fine-tuning stage
        model.compile(mode=None if compiled is True else compiled)
    g = torch.Generator(device="cpu").manual_seed(1)
    batch = (torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
             torch.randint(0, 10, (args.batch,), generator=g).to(device))
    if device.type == "cuda":  # a captured step's activations live in the graph's pool: count the capture
        torch.cuda.reset_peak_memory_stats(device)
    if compiled or graphs:  # compile / warm-up + capture time reported apart, outside the timed steps
        t0 = time.perf_counter()
        for _ in range(3 if graphs else 1):
            task.step(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        compile_s = round(time.perf_counter() - t0, 1)
    step_s, peak = time_steps(lambda: task.step(batch), device, warmup=args.warmup, steps=args.steps, runs=args.runs,
                              reset_peak=not graphs)
    return {"bench": "derived_train", "device": device_name(device), "impl": variant, "batch": args.batch,
            "layers": args.layers, "C": args.C, "step_s": round(step_s, 5), "images_per_s": round(args.batch / step_s, 1),
            "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 2),
            "compile_s": compile_s, "runs": args.runs, "steps_per_run": args.steps, "torch": torch.__version__}


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--batch", type=int, default=96)
    p.add_argument("--layers", type=int, default=20)
    p.add_argument("--C", type=int, default=36)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    device = get_device(args.device)
    measure_all(lambda v: measure(v, args, device), args.variants, "derived_train", device, not args.no_save)


if __name__ == "__main__":
    main()
