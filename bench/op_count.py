"""ATen ops and host syncs per search step, counted on any device (a CPU will do): the number the
batched cell drives down. Every op is at least one kernel launch and one trip through PyTorch's
dispatcher on a GPU, where the DARTS step is launch-bound (39k kernels per step measured on an
H200); a host sync stalls the CPU and rules out CUDA-graph capture. One JSON line per variant,
appended to reports/bench/op_count.json (device-independent, so kept from a CPU too).

Variants: `original`, the plain loop stepped as the original train_search.py (full backward passes,
torch's default optimizers; at order 2 with nascore's unrolled gradient, as every variant), then
nascore's step with each mixed op.

  python bench/op_count.py                   # 8 cells, C=16, 32x32 (bench/supernet_step.py's sizes)
  python bench/op_count.py --order 2
  python bench/op_count.py --layers 3 --C 4 --no-save     # smoke test
"""
from __future__ import annotations

import json

import torch

from _common import (append_lines, darts_strategy, device_name, get_device, original_darts_step,
                     original_optimizers, parser)
from nascore.ops import MIXED_OPS
from nascore.perf import OpCounter
from nascore.supernets import DartsSupernet

VARIANTS = {"original": "reference", **{name: name for name in MIXED_OPS.names() if name != "auto"}}


def count(variant: str, args, device: torch.device) -> dict:
    mixed_op = VARIANTS[variant]
    torch.manual_seed(0)
    model = DartsSupernet(args.C, 10, args.layers, mixed_op=mixed_op).to(device)
    strategy = darts_strategy(model, order=args.order)
    if variant == "original":  # the original code's optimizers: torch's defaults for the device
        original_optimizers(strategy)
    g = torch.Generator().manual_seed(1)
    batch = tuple((torch.randn(args.batch, 3, 32, 32, generator=g).to(device),
                   torch.randint(0, 10, (args.batch,), generator=g).to(device)) for _ in range(2))
    step = (lambda: original_darts_step(strategy, batch)) if variant == "original" else (lambda: strategy.step(batch))
    step()  # optimizer state exists from the second step on, as in a search
    with OpCounter() as ops:
        step()
    return {"bench": "op_count", "device": device_name(device), "impl": variant, "mixed_op": mixed_op,
            "order": args.order, "layers": args.layers, "C": args.C, "batch": args.batch,
            "step": "original" if variant == "original" else "nascore", "aten_ops_per_step": ops.total,
            "host_syncs_per_step": ops.syncs, "top_ops": dict(ops.ops.most_common(5)), "torch": torch.__version__}


def main() -> None:
    p = parser(__doc__, steps=False, runs=False)  # a count, not a timing
    p.set_defaults(device="cpu")
    p.add_argument("--batch", type=int, default=4, help="the count does not depend on it")
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    p.add_argument("--order", type=int, default=1)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    device = get_device(args.device)
    rows = [count(v, args, device) for v in args.variants]
    base = {r["impl"]: r["aten_ops_per_step"] for r in rows}
    for r in rows:
        for ref in ("original", "reference"):
            if ref in base:
                r[f"ratio_to_{ref}"] = round(r["aten_ops_per_step"] / base[ref], 3)
        print(json.dumps(r), flush=True)
    print(f"\n{'variant':<18}{'ATen ops / step':>16}{'host syncs':>12}{'x reference':>13}{'x original':>12}")
    for r in rows:
        print(f"{r['impl']:<18}{r['aten_ops_per_step']:>16,}{r['host_syncs_per_step']:>12}"
              f"{r.get('ratio_to_reference', float('nan')):>13.3f}{r.get('ratio_to_original', float('nan')):>12.3f}")
    if not args.no_save:
        append_lines("op_count", rows)


if __name__ == "__main__":
    main()
