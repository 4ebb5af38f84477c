"""Batched augmentations: crops are real windows of the padded image, flips and cutout exact."""
import torch

from nascore.data.augment import cutout, normalize, random_crop, random_flip
from nascore.data.loader import TensorBatches, make_transform


def test_random_crop_returns_windows_of_the_padded_input():
    x = torch.arange(2 * 3 * 6 * 6, dtype=torch.float32).view(2, 3, 6, 6)
    g = torch.Generator().manual_seed(0)
    out = random_crop(x, 4, g, pad=2)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        hits = [(dy, dx) for dy in range(7) for dx in range(7)
                if torch.equal(padded[i, :, dy:dy + 4, dx:dx + 4], out[i])]
        assert hits, "crop is not a window of the padded image"


def test_flip_and_cutout():
    x = torch.randn(64, 3, 8, 8)
    g = torch.Generator().manual_seed(0)
    y = random_flip(x, g)
    flipped = [torch.equal(y[i], x[i].flip(-1)) for i in range(64)]
    assert all(f or torch.equal(y[i], x[i]) for i, f in enumerate(flipped))
    assert 10 < sum(flipped) < 54
    c = cutout(torch.ones(16, 3, 32, 32), 16, torch.Generator().manual_seed(1))
    zeros = (c == 0).all(dim=1).sum(dim=(1, 2))
    assert zeros.max() == 256 and zeros.min() > 0  # full 16x16 square unless clipped at a border


def test_normalize():
    x = torch.full((1, 3, 2, 2), 255, dtype=torch.uint8)
    out = normalize(x, [0.5, 0.5, 0.5], [0.5, 0.25, 1.0])
    assert torch.allclose(out[0, :, 0, 0], torch.tensor([1.0, 2.0, 0.5]))


def test_batches_are_a_function_of_seed_epoch_step():
    x = torch.randint(0, 255, (50, 3, 40, 40), dtype=torch.uint8)
    y = torch.arange(50)
    t = make_transform("seed001", mean=[0.5] * 3, std=[0.5] * 3, crop_size=32)
    a = TensorBatches(x, y, 16, t, shuffle=True, seed=3)
    full = list(a.epoch(2))
    resumed = list(a.epoch(2, start=2))
    assert len(full) == 4 and len(resumed) == 2
    assert all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(full[2:], resumed))
    assert sorted(torch.cat([b[1] for b in full]).tolist()) == list(range(50))
    assert not torch.equal(torch.cat([b[1] for b in a.epoch(3)]), torch.cat([b[1] for b in full]))
