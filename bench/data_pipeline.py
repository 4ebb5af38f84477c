"""GPU benchmark: the training data pipeline (uint8 CIFAR-size images resident on the device,
DARTS augmentation batched on the device: pad-crop, flip, normalise, cutout) in images/s, to set
beside the training benchmarks (the pipeline must never be the bottleneck). Synthetic pixels:
throughput does not depend on image content. One JSON line, reports/bench/data_pipeline.json.

  python bench/data_pipeline.py
  python bench/data_pipeline.py --device cpu --images 2000 --runs 2
"""
from __future__ import annotations


import torch

from _common import device_name, emit, get_device, parser, time_steps
from nascore.data.loader import TensorBatches, make_transform

MEAN, STD = [0.4914, 0.4822, 0.4465], [0.2470, 0.2435, 0.2616]


def main() -> None:
    p = parser(__doc__, steps=False)
    p.add_argument("--images", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=96)
    args = p.parse_args()
    device = get_device(args.device)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.images, 3, 40, 40), dtype=torch.uint8, generator=g).to(device)
    y = torch.randint(0, 10, (args.images,), generator=g).to(device)
    batches = TensorBatches(x, y, args.batch, make_transform("darts", mean=MEAN, std=STD, cutout_length=16),
                            shuffle=True, seed=0)
    epoch = iter(())

    def step() -> None:
        nonlocal epoch
        try:
            next(epoch)
        except StopIteration:
            epoch = batches.epoch(0)
            next(epoch)

    step_s, peak = time_steps(step, device, warmup=3, steps=len(batches), runs=args.runs)
    emit({"bench": "data_pipeline", "device": device_name(device), "impl": "gpu_resident_uint8", "batch": args.batch,
          "images": args.images, "step_s": round(step_s, 6), "images_per_s": round(args.batch / step_s, 1),
          "peak_mem_mb_per_image": None if peak is None else round(peak / args.batch, 3),
          "runs": args.runs, "torch": torch.__version__}, [], "data_pipeline", device, not args.no_save)


if __name__ == "__main__":
    main()
