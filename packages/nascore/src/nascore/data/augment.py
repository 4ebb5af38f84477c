"""Batched augmentations on uint8/float image tensors, on whatever device they live on.

Each op takes an explicit torch.Generator so a step's augmentation depends only on
(seed, epoch, step): a resumed run sees exactly the batches an uninterrupted one would.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def random_crop(x: torch.Tensor, size: int, gen: torch.Generator, pad: int = 0) -> torch.Tensor:
    """A random size x size crop per image, after zero-padding `pad` pixels on every side."""
    if pad:
        x = F.pad(x, (pad, pad, pad, pad))
    n, _, h, w = x.shape
    if h < size or w < size:
        raise ValueError(f"cannot crop {size}x{size} from {h}x{w} images")
    oy = torch.randint(0, h - size + 1, (n,), generator=gen, device=gen.device).to(x.device)
    ox = torch.randint(0, w - size + 1, (n,), generator=gen, device=gen.device).to(x.device)
    ar = torch.arange(size, device=x.device)
    rows = (oy[:, None] + ar)[:, None, :, None].expand(n, x.shape[1], size, w)
    x = torch.gather(x, 2, rows)
    cols = (ox[:, None] + ar)[:, None, None, :].expand(n, x.shape[1], size, size)
    return torch.gather(x, 3, cols)


def random_flip(x: torch.Tensor, gen: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Horizontal flip of each image with probability p."""
    flip = (torch.rand(x.shape[0], generator=gen, device=gen.device) < p).to(x.device)
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def cutout(x: torch.Tensor, length: int, gen: torch.Generator) -> torch.Tensor:
    """Zero one length x length square per image, centred anywhere (DeVries & Taylor 2017)."""
    n, _, h, w = x.shape
    cy = torch.randint(0, h, (n,), generator=gen, device=gen.device).to(x.device)
    cx = torch.randint(0, w, (n,), generator=gen, device=gen.device).to(x.device)
    ys = torch.arange(h, device=x.device)[None, :]
    xs = torch.arange(w, device=x.device)[None, :]
    in_y = (ys >= (cy[:, None] - length // 2)) & (ys < (cy[:, None] + length - length // 2))
    in_x = (xs >= (cx[:, None] - length // 2)) & (xs < (cx[:, None] + length - length // 2))
    mask = ~(in_y[:, :, None] & in_x[:, None, :])
    return x * mask[:, None].to(x.dtype)


def normalize(x: torch.Tensor, mean: list[float], std: list[float]) -> torch.Tensor:
    """uint8 [0, 255] -> float, per-channel standardised."""
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x.float() / 255.0 - m) / s
