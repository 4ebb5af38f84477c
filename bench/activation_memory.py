"""Activation memory of the search supernet: the bytes autograd keeps for backward in one forward
(each storage once, parameters excluded), per image, for each mixed op. Device-independent in fp32
(the same tensors are kept on any device), so it is measured and kept on the CPU too; it is not
peak memory (weights, gradients, optimizer state and workspaces come on top; peak is measured by
supernet_step.py on a GPU). One JSON line per mixed op, reports/bench/activation_memory.json.

  python bench/activation_memory.py                       # 8 cells, C=16, 32x32, batch 8
  python bench/activation_memory.py --layers 3 --C 4 --batch 2 --no-save
"""
from __future__ import annotations

import json

import torch
import torch.nn.functional as F

from _common import append_lines, device_name, get_device, parser
from nascore.supernets import DartsSupernet

IMPLS = ["reference", "fused", "fused_recompute", "batched", "batched_recompute"]


def saved_bytes(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> int:
    kept: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        kept[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        F.cross_entropy(model(x), y)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in kept.items() if ptr not in params)


def main() -> None:
    p = parser(__doc__, steps=False, runs=False)  # a byte count, not a timing
    p.set_defaults(device="cpu")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--C", type=int, default=16)
    args = p.parse_args()
    device = get_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, 32, 32, generator=g).to(device)
    y = torch.randint(0, 10, (args.batch,), generator=g).to(device)
    rows = []
    for impl in IMPLS:
        torch.manual_seed(0)
        model = DartsSupernet(args.C, 10, args.layers, mixed_op=impl).to(device)
        rows.append({"bench": "activation_memory", "device": device_name(device), "impl": impl, "batch": args.batch,
                     "layers": args.layers, "C": args.C, "dtype": "float32",
                     "saved_mb_per_image": round(saved_bytes(model, x, y) / 2**20 / args.batch, 2),
                     "torch": torch.__version__})
    for r in rows:
        r["ratio_to_reference"] = round(r["saved_mb_per_image"] / rows[0]["saved_mb_per_image"], 3)
        print(json.dumps(r), flush=True)
    if not args.no_save:
        append_lines("activation_memory", rows)


if __name__ == "__main__":
    main()
