"""Typed params of the data section (params/data.yaml)."""
from __future__ import annotations

from dataclasses import dataclass

from nascore.config import spec


@dataclass(frozen=True)
class CifarPrep:
    """CIFAR preprocessing. seed 001 sec. 2.2: scale (aspect kept) to 40, random 32 crop, flip;
    the DARTS family instead pads the 32x32 original by 4 (selected per method)."""

    scale_size: int = spec(40, ge=8, le=64, doc="training images scaled to this size (paper: 40)")
    crop_size: int = spec(32, ge=8, le=64)
    mean: list[float] = spec(default_factory=lambda: [0.4914, 0.4822, 0.4465])
    std: list[float] = spec(default_factory=lambda: [0.2470, 0.2435, 0.2616])


@dataclass(frozen=True)
class ImagenetPrep:
    """ImageNet-style preprocessing: short side to `resize`, train stored at resize x resize
    (random `crop_size` crops per batch), test centre-cropped to `crop_size`."""

    resize: int = spec(256, ge=16, le=1024)
    crop_size: int = spec(224, ge=16, le=1024)
    mean: list[float] = spec(default_factory=lambda: [0.485, 0.456, 0.406])
    std: list[float] = spec(default_factory=lambda: [0.229, 0.224, 0.225])

    def validate(self, path: str) -> None:
        from nascore.config import ParamsError

        if self.crop_size > self.resize:
            raise ParamsError(f"{path}.crop_size: got {self.crop_size}, must be <= resize ({self.resize})")


@dataclass(frozen=True)
class DataParams:
    """Where data comes from, how much of it, and how it is preprocessed."""

    root: str | None = spec(None, doc="explicit data root; $NASREPRO_DATA also honoured")
    allow_download: bool = False
    train_per_class: int | None = spec(None, ge=1, doc="subset: images per class (null = all)")
    test_per_class: int | None = spec(None, ge=1)
    max_prepared_gb: float = spec(24.0, gt=0, doc="refuse to materialise more than this")
    cifar: CifarPrep = spec(default_factory=CifarPrep)
    imagenet: ImagenetPrep = spec(default_factory=ImagenetPrep)
