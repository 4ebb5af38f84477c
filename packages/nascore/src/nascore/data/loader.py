"""Mini-batches from uint8 tensors resident on the device, augmented per batch on the device."""
from __future__ import annotations

from typing import Callable, Iterator

import torch

from nascore.data.augment import cutout, normalize, random_crop, random_flip
from nascore.registry import Registry

Transform = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
AUGMENTATIONS: Registry = Registry("augmentation")


def step_seed(seed: int, epoch: int, step: int) -> int:
    """A seed that depends only on (seed, epoch, step): resume-safe randomness."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63 - 1)


class TensorBatches:
    """Batches of (augmented float images, labels); the epoch's order depends on (seed, epoch).
    Under data parallelism (`world` > 1) a batch is the global batch and each rank gets every
    world-th image of it, so the processes together see what one process would."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, transform: Transform,
                 *, shuffle: bool, seed: int, drop_last: bool = False, rank: int = 0, world: int = 1) -> None:
        if len(x) != len(y):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if world > 1 and batch_size < world:
            raise ValueError(f"batch size {batch_size} < {world} processes: every process needs images")
        self.x, self.y, self.batch_size, self.transform = x, y, batch_size, transform
        self.shuffle, self.seed, self.drop_last = shuffle, seed, drop_last
        self.rank, self.world = rank, world  # data-parallel: each process takes its share of every batch

    def __len__(self) -> int:
        n = len(self.x)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = (torch.randperm(len(self.x), generator=torch.Generator().manual_seed(
            step_seed(self.seed, epoch, -1))) if self.shuffle else torch.arange(len(self.x)))
        order = order.to(self.x.device)
        for b in range(start, len(self)):
            idx = order[b * self.batch_size:(b + 1) * self.batch_size][self.rank::self.world]
            gen = torch.Generator(device=self.x.device).manual_seed(step_seed(self.seed, epoch, b))
            yield self.transform(self.x[idx], gen), self.y[idx]


class PairedBatches:
    """(train batch, val batch) pairs for bi-level search; length of the train side."""

    def __init__(self, train: TensorBatches, val: TensorBatches) -> None:
        self.train, self.val = train, val

    def __len__(self) -> int:
        return len(self.train)

    def epoch(self, epoch: int, start: int = 0):
        # the val side restarts (in a second order) each time it runs out before the train side; resuming
        # at `start` continues that pass where it was, so a resumed epoch pairs the same batches
        passes, at = divmod(start, max(len(self.val), 1))
        val_iter = self.val.epoch(epoch if passes == 0 else epoch + 1_000, at)
        for t in self.train.epoch(epoch, start):
            try:
                v = next(val_iter)
            except StopIteration:
                val_iter = self.val.epoch(epoch + 1_000)
                v = next(val_iter)
            yield t, v


def make_transform(kind: str, *, mean: list[float], std: list[float], crop_size: int = 32,
                   cutout_length: int = 0) -> Transform:
    """A registered augmentation bound to its settings."""
    return AUGMENTATIONS[kind](mean=mean, std=std, crop_size=crop_size, cutout_length=cutout_length)


@AUGMENTATIONS.register("seed001")
def _seed001(*, mean, std, crop_size, cutout_length) -> Transform:
    """Random crop from the 40x40 scaled image + flip (seed 001 sec. 2.2)."""
    def t(x, g):
        x = normalize(random_flip(random_crop(x, crop_size, g), g), mean, std)
        return cutout(x, cutout_length, g) if cutout_length else x
    return t


@AUGMENTATIONS.register("darts")
def _darts(*, mean, std, crop_size, cutout_length) -> Transform:
    """Zero-pad 4, random crop, flip, normalise, optional cutout (DARTS utils.py)."""
    def t(x, g):
        x = normalize(random_flip(random_crop(x, crop_size, g, pad=4), g), mean, std)
        return cutout(x, cutout_length, g) if cutout_length else x
    return t


@AUGMENTATIONS.register("random_crop_flip")
def _random_crop_flip(*, mean, std, crop_size, cutout_length) -> Transform:
    """ImageNet-style: random crop_size crop from the stored image + flip."""
    def t(x, g):
        return normalize(random_flip(random_crop(x, crop_size, g), g), mean, std)
    return t


@AUGMENTATIONS.register("none")
def _none(*, mean, std, crop_size, cutout_length) -> Transform:
    """Evaluation: normalise only."""
    return lambda x, g: normalize(x, mean, std)
