"""The `prepare` stage: decode once, write uint8 tensors + a manifest, atomically and durably."""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from nascore.data.params import CifarPrep, DataParams, ImagenetPrep
from nascore.data.sources import (DATASETS, DataError, DataNotFound, RawDataset, iter_classes, labelled_roots, locate,
                                  read, search_roots)
from nascore.faults import maybe_kill
from nascore.lock import alive, hold

MANIFEST = "manifest.json"
TENSORS = "tensors.pt"
SCHEMA = "nascore.prepared/1"


class NotRun(RuntimeError):
    """A stage's input was recorded as 'not run' (no data); carries the reason."""


def _resize(img: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if img.shape[-2:] == (h, w):
        return img
    out = F.interpolate(img[None].float(), size=(h, w), mode="bilinear", antialias=True,
                        align_corners=False)
    return out[0].round().clamp(0, 255).to(torch.uint8)


def scale_keep_aspect(img: torch.Tensor, size: int, min_size: int, fill: torch.Tensor) -> torch.Tensor:
    """Scale so the longer side is `size` (aspect kept), then centre on a canvas of
    max(size, min_size) filled with the mean colour (seed 001 sec. 2.2)."""
    h, w = img.shape[-2:]
    s = size / max(h, w)
    img = _resize(img, max(1, round(h * s)), max(1, round(w * s)))
    side = max(size, min_size)
    canvas = fill.view(3, 1, 1).expand(3, side, side).clone()
    top, left = (side - img.shape[-2]) // 2, (side - img.shape[-1]) // 2
    canvas[:, top:top + img.shape[-2], left:left + img.shape[-1]] = img
    return canvas


def _short_side_center(img: torch.Tensor, resize: int, crop: int) -> torch.Tensor:
    h, w = img.shape[-2:]
    s = resize / min(h, w)
    img = _resize(img, max(crop, round(h * s)), max(crop, round(w * s)))
    top, left = (img.shape[-2] - crop) // 2, (img.shape[-1] - crop) // 2
    return img[:, top:top + crop, left:left + crop]


def preprocess_cifar(raw: RawDataset, p: CifarPrep) -> dict[str, torch.Tensor]:
    """train_x (scaled, >= crop size), train_x32 (originals), test_x (32x32 originals)."""
    orig = torch.stack([_resize(im, 32, 32) for im in raw.train.images])
    mean_rgb = orig.float().mean(dim=(0, 2, 3)).round().to(torch.uint8)
    scaled = torch.stack([scale_keep_aspect(im, p.scale_size, p.crop_size, mean_rgb) for im in orig])
    test = torch.stack([_resize(im, 32, 32) for im in raw.test.images])
    return {"train_x": scaled, "train_x32": orig, "train_y": torch.tensor(raw.train.labels),
            "test_x": test, "test_y": torch.tensor(raw.test.labels), "mean_rgb": mean_rgb}


def preprocess_imagenet(raw: RawDataset, p: ImagenetPrep) -> dict[str, torch.Tensor]:
    """train_x at resize x resize (random crops later), test_x centre-cropped to crop_size."""
    train = torch.stack([_short_side_center(im, p.resize, p.resize) for im in raw.train.images])
    test = torch.stack([_short_side_center(im, p.resize, p.crop_size) for im in raw.test.images])
    return {"train_x": train, "train_y": torch.tensor(raw.train.labels),
            "test_x": test, "test_y": torch.tensor(raw.test.labels)}


def _shown(path: Path, project_root: Path, explicit_root: str | None = None) -> str:
    """A searched root, or a path under one, named as the same on every checkout and machine, for
    outputs DVC tracks (a machine path would change their hash per checkout)."""
    path = Path(path).resolve()
    for root, label in labelled_roots(explicit_root, project_root):
        root = root.resolve()
        if path == root or root in path.parents:
            rel = path.relative_to(root).as_posix()
            return label if rel == "." else f"{label}/{rel}"
    return f"<outside the repo>/{path.name}"


def _writing(pid: int) -> bool:
    """Whether process `pid` may still be writing its temp folder (this process is not: it calls `recover`
    before it writes)."""
    return pid != os.getpid() and alive(pid)


def _write_synced(path: Path, data: bytes) -> None:
    with open(path, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def recover(out_dir: Path) -> None:
    """Undo what a killed prepare left beside `out_dir` (dead PIDs only; a live prepare is left alone):
    put `.<name>.old-<pid>` back if `out_dir` is missing (it was the complete old folder), otherwise
    delete it, and delete every `.<name>.tmp-<pid>`."""
    if not out_dir.parent.is_dir():
        return
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(old|tmp)-(\d+)")
    stale = sorted((m.group(1), path) for path in out_dir.parent.iterdir()
                   if (m := pattern.fullmatch(path.name)) and not _writing(int(m.group(2))))
    for kind, path in stale:  # "old" before "tmp"
        if kind == "old" and not out_dir.exists():
            path.rename(out_dir)
        else:
            shutil.rmtree(path)


def _write_atomically(out_dir: Path, manifest: str, tensors: bytes | None = None) -> None:
    """Write into `.<name>.tmp-<pid>` beside `out_dir` (tensors first, the manifest last), then swap
    it in: at every instant `out_dir` is the whole old folder or the whole new one, or, killed
    between the two renames, absent with the old one in `.<name>.old-<pid>` for `recover`."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with hold(out_dir.with_name(f".{out_dir.name}.lock"), f"prepare of {out_dir}"):  # one writer at a time
        _swap_in(out_dir, manifest, tensors)


def _swap_in(out_dir: Path, manifest: str, tensors: bytes | None) -> None:
    """The write and the two renames of `_write_atomically`, under its lock."""
    recover(out_dir)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    try:
        tmp.mkdir()  # modes from the umask, like any folder the user makes (not mkdtemp's 0700)
        if tensors is not None:
            _write_synced(tmp / TENSORS, tensors)
            maybe_kill("prepare-manifest")
        _write_synced(tmp / MANIFEST, manifest.encode())  # last: a manifest never exists without its tensors
        _fsync_dir(tmp)
        if out_dir.exists():
            out_dir.rename(old)
            maybe_kill("prepare-swap")
        tmp.rename(out_dir)
        _fsync_dir(out_dir.parent)
    except BaseException:
        if old.exists() and not out_dir.exists():
            old.rename(out_dir)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def prepare(name: str, params: DataParams, project_root: Path, out_dir: Path) -> dict[str, Any]:
    """Locate, read, preprocess and write one dataset; a missing dataset is recorded as not run."""
    info = DATASETS[name]
    try:
        located = locate(name, params.root, project_root, params.allow_download)
    except DataNotFound:
        roots = ", ".join(_shown(r, project_root, params.root) for r in search_roots(params.root, project_root))
        manifest = {"schema": SCHEMA, "dataset": name, "status": "not run",
                    "reason": f"not run: no {info.display_name} data at {roots}"}
        _write_atomically(out_dir, json.dumps(manifest, indent=2) + "\n")
        return manifest
    raw = read(name, located, (params.train_per_class, params.test_per_class))
    if not raw.train.images or not raw.test.images:
        raise DataError(f"{located.path}: found no images for {name} (train {len(raw.train.images)}, "
                        f"test {len(raw.test.images)})")
    side = params.imagenet.resize if info.family == "imagenet" else max(params.cifar.scale_size, 32)
    est_gb = (len(raw.train.images) * 3 * side * side * (2 if info.family == "cifar" else 1)
              + len(raw.test.images) * 3 * side * side) / 1e9
    if est_gb > params.max_prepared_gb:
        raise DataError(f"{name}: materialising {est_gb:.1f} GB of tensors exceeds data.max_prepared_gb="
                        f"{params.max_prepared_gb}; set data.train_per_class / test_per_class "
                        "or raise the limit")
    if info.family == "cifar":
        tensors, prep = preprocess_cifar(raw, params.cifar), params.cifar
    else:
        tensors, prep = preprocess_imagenet(raw, params.imagenet), params.imagenet
    tensors["classes"] = raw.classes
    buf = io.BytesIO()
    torch.save(tensors, buf)
    blob = buf.getvalue()
    names = raw.classes
    manifest = {
        "schema": SCHEMA, "dataset": name, "status": "ok", "display_name": raw.display_name,
        "source": {"kind": raw.kind, "path": _shown(Path(raw.source), project_root, params.root)},
        "classes": names,
        "counts": {split: {names[c]: n for c, n in iter_classes(getattr(raw, split).labels)}
                   for split in ("train", "test")},
        "shapes": {k: list(v.shape) for k, v in tensors.items() if isinstance(v, torch.Tensor)},
        "preprocessing": {"family": info.family, **prep.__dict__},
        "subset": {"train_per_class": params.train_per_class, "test_per_class": params.test_per_class},
        "sha256": hashlib.sha256(blob).hexdigest(),
    }
    if "mean_rgb" in tensors:
        manifest["mean_rgb"] = tensors["mean_rgb"].tolist()
    _write_atomically(out_dir, json.dumps(manifest, indent=2) + "\n", blob)
    return manifest


def read_manifest(prepared: Path) -> dict[str, Any]:
    """A prepared folder's manifest, after putting back the folder a killed prepare had moved aside."""
    path = prepared / MANIFEST
    if not path.is_file():
        recover(prepared)
    if not path.is_file():
        raise DataError(f"{path} is missing: run the prepare stage first (dvc repro prepare)")
    return json.loads(path.read_text())


def load_prepared(prepared: Path, verify: bool = True) -> tuple[dict[str, Any], dict[str, Any]]:
    """The prepared tensors and manifest; NotRun if prepare recorded no data."""
    manifest = read_manifest(prepared)
    if manifest.get("status") != "ok":
        raise NotRun(manifest.get("reason", f"not run: {prepared}"))
    blob = (prepared / TENSORS).read_bytes()
    if verify and hashlib.sha256(blob).hexdigest() != manifest["sha256"]:
        raise DataError(f"{prepared / TENSORS} does not match its manifest checksum; re-run prepare")
    return torch.load(io.BytesIO(blob), weights_only=True), manifest
