"""Finding and reading datasets: CIFAR pickles, ImageFolder trees, archives, ImageNet folders.

Lookup order (SPEC "Data"): an explicit root (params `data.root` or $NASREPRO_DATA; one that is
not a folder is an error, never skipped), `data/raw/`, `../shared/data/`, then a torchvision download
where one exists and is allowed. When nothing is found, DataNotFound says every place that was tried
and how to provide data. What is read is checked here, at the edge: a DataError names the file, what
is wrong and how to fix it.
"""
from __future__ import annotations

import io
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from nascore.registry import Registry

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class DataError(RuntimeError):
    """Data exists but cannot be read (corrupt pickle or archive, bad layout)."""


class DataNotFound(DataError):
    """No source of a dataset was found in any of the searched places."""

    def __init__(self, dataset: str, tried: list[str], how: str) -> None:
        self.dataset, self.tried = dataset, tried
        places = "\n  ".join(tried)
        super().__init__(f"no {dataset} data found. Looked in:\n  {places}\n{how}")


@dataclass
class Split:
    """Decoded images of one split: uint8 tensors (C,H,W) of possibly varying size, labels."""

    images: list[torch.Tensor]
    labels: list[int]


@dataclass
class RawDataset:
    """What a source yields: train and test splits, class names, provenance."""

    train: Split
    test: Split
    classes: list[str]
    display_name: str
    source: str
    kind: str


@dataclass(frozen=True)
class DatasetInfo:
    """How a dataset can appear on disk, in the order candidates are tried within a root."""

    name: str
    family: str                                     # "cifar" or "imagenet"
    display_name: str
    pickle_dirs: tuple[str, ...] = ()
    pickle_archives: tuple[str, ...] = ()
    folders: tuple[tuple[str, str], ...] = ()       # (directory name, display name)
    archives: tuple[tuple[str, str], ...] = ()      # (archive file name, display name)
    test_split: str = "test"
    torchvision: str | None = None                  # torchvision.datasets class for download
    how_to_provide: str = ""
    extra: dict = field(default_factory=dict)


DATASETS: Registry = Registry("dataset")

for info in (
    DatasetInfo(
        "cifar10", "cifar", "CIFAR-10", pickle_dirs=("cifar-10-batches-py",),
        pickle_archives=("cifar-10-python.tar.gz",),
        folders=(("cifar10", "CIFAR-10"), ("cifar10-jpeg", "CIFAR-10 (JPEG q75 re-encoding)")),
        archives=(("cifar10-jpeg.tar.gz", "CIFAR-10 (JPEG q75 re-encoding)"),),
        torchvision="CIFAR10",
        how_to_provide="Provide it as data/raw/cifar-10-batches-py (the python pickles), an "
                       "ImageFolder tree data/raw/cifar10/{train,test}/<class>/, or set "
                       "data.root in params/data.yaml (or $NASREPRO_DATA) to a folder holding one."),
    DatasetInfo(
        "cifar100", "cifar", "CIFAR-100", pickle_dirs=("cifar-100-python",),
        pickle_archives=("cifar-100-python.tar.gz",), folders=(("cifar100", "CIFAR-100"),),
        torchvision="CIFAR100",
        how_to_provide="Provide it as data/raw/cifar-100-python (the python pickles), an "
                       "ImageFolder tree data/raw/cifar100/{train,test}/<class>/, or set "
                       "data.root in params/data.yaml (or $NASREPRO_DATA)."),
    DatasetInfo(
        "imagenet", "imagenet", "ImageNet (ILSVRC2012)",
        folders=(("imagenet", "ImageNet (ILSVRC2012)"), ("ILSVRC2012", "ImageNet (ILSVRC2012)")),
        test_split="val",
        how_to_provide="Provide an ImageFolder tree imagenet/{train,val}/<wnid>/*.JPEG under "
                       "data/raw/ or under data.root in params/data.yaml (or $NASREPRO_DATA)."),
    DatasetInfo(
        "imagenette", "imagenet", "Imagenette (10 ImageNet classes, 224px JPEG)",
        folders=(("imagenette-224", "Imagenette (10 ImageNet classes, 224px JPEG)"),),
        archives=(("imagenette-224.tar", "Imagenette (10 ImageNet classes, 224px JPEG)"),),
        test_split="val",
        how_to_provide="Provide imagenette-224/{train,val}/<wnid>/ (or imagenette-224.tar) under "
                       "data/raw/ or data.root (or $NASREPRO_DATA)."),
):
    DATASETS.register(info.name)(info)


@dataclass(frozen=True)
class Located:
    """A found source: how to read it and what to call it."""

    kind: str            # pickle | pickle_archive | folder | archive | download
    path: Path
    display_name: str


def labelled_roots(explicit: str | None, project_root: Path) -> list[tuple[Path, str]]:
    """The roots searched, in order, each with the name outputs give it: as it was given, the same on
    every checkout and machine (data.root as written, $NASREPRO_DATA, data/raw, ../shared/data)."""
    roots = []
    env = os.environ.get("NASREPRO_DATA")
    for r, label, is_env in ((explicit, explicit, False), (env, "$NASREPRO_DATA", True)):
        if r:
            root = Path(r).expanduser()
            if not root.is_dir():
                raise _missing_root(r, root, is_env)
            roots.append((root, label))
    return roots + [(project_root / "data" / "raw", "data/raw"),
                    (project_root.parent / "shared" / "data", "../shared/data")]


def _missing_root(given: str, root: Path, is_env: bool) -> DataError:
    """An explicit root that is not a folder: an error, never a silent fall back to the other roots."""
    what = "does not exist" if not root.exists() else "is not a folder"
    if is_env:
        return DataError(f"$NASREPRO_DATA is '{given}', which {what} ({root.resolve()}); point it at the folder "
                         "that holds the dataset, or unset it to search data/raw/ and ../shared/data/")
    return DataError(f"data.root (params/data.yaml, or the profile's data section in params/profiles.yaml) is "
                     f"'{given}', which {what} ({root.resolve()}); point it at the folder that holds the "
                     "dataset, or set data.root: null to search data/raw/ and ../shared/data/")


def search_roots(explicit: str | None, project_root: Path) -> list[Path]:
    """The roots searched, in order."""
    return [root for root, _ in labelled_roots(explicit, project_root)]


def locate(name: str, explicit_root: str | None, project_root: Path,
           allow_download: bool = False) -> Located:
    """Find a dataset's source; raise DataNotFound listing every place tried."""
    info: DatasetInfo = DATASETS[name]
    tried: list[str] = []
    for root in search_roots(explicit_root, project_root):
        candidates = ([("pickle", d, info.display_name) for d in info.pickle_dirs]
                      + [("pickle_archive", a, info.display_name) for a in info.pickle_archives]
                      + [("folder", d, disp) for d, disp in info.folders]
                      + [("archive", a, disp) for a, disp in info.archives])
        for kind, rel, display in candidates:
            path = root / rel
            tried.append(str(path))
            ok = path.is_dir() if kind in ("pickle", "folder") else path.is_file()
            if ok:
                return Located(kind, path.resolve(), display)
    if info.torchvision and allow_download:
        return Located("download", project_root / "data" / "raw", info.display_name)
    if info.torchvision:
        tried.append("torchvision download (disabled: set data.allow_download: true)")
    raise DataNotFound(name, tried, info.how_to_provide)


# -- readers ---------------------------------------------------------------------------------
Selector = Callable[[str, list[tuple[str, int]]], list[tuple[str, int]]]


class _CifarUnpickler(pickle.Unpickler):
    """A CIFAR batch is a dict of numpy arrays, lists, numbers, strings and bytes: only the globals
    that rebuild a numpy array may be looked up, so a crafted file cannot run code on load."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str):
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"it asks for {module}.{name}, which a CIFAR batch never holds "
                                         "(only numpy arrays, lists, numbers and strings); nothing in it was run")
        return super().find_class(module, name)


def _unpickle(fileobj, where: str) -> dict:
    try:
        return _CifarUnpickler(fileobj, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, zlib.error, OSError) as e:
        raise DataError(f"{where} is corrupt or not a CIFAR pickle ({type(e).__name__}: {e}); "
                        "replace it with a fresh copy") from None


def _cifar_batches(name: str) -> tuple[list[str], str, str, str]:
    if name == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)], "test_batch", "labels", "batches.meta"
    return ["train"], "test", "fine_labels", "meta"


def _checked_batch(d: dict, key: str, num_classes: int, where: str, display: str) -> tuple[np.ndarray, list]:
    """A batch's (data, labels), checked: uint8 rows of 3072 pixels (3x32x32), one integer label in
    [0, num_classes) per row. Anything else is refused here, before it reaches a loss as an index."""
    fix = f"replace it with a fresh copy of {display} (the python version)"
    if not isinstance(d, dict) or "data" not in d or key not in d:
        raise DataError(f"{where} is not a CIFAR batch (a dict with 'data' and '{key}'); {fix}")
    try:
        data, ys = np.asarray(d["data"]), list(d[key])
    except (ValueError, TypeError) as e:
        raise DataError(f"{where}: 'data' is not an array of rows or '{key}' not a list ({e}); {fix}") from None
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise DataError(f"{where}: 'data' is {data.dtype} of shape {data.shape}, expected uint8 rows of "
                        f"3072 pixels (3x32x32); {fix}")
    if len(data) != len(ys):
        raise DataError(f"{where}: {len(data)} image rows but {len(ys)} labels in '{key}', expected one label "
                        f"per row; {fix}")
    labels = np.asarray(ys)
    if ys and labels.dtype.kind not in "iu":
        row = next((i for i, y in enumerate(ys) if isinstance(y, bool) or not isinstance(y, (int, np.integer))), 0)
        raise DataError(f"{where}: label {ys[row]!r} at row {row} is not an integer; labels in '{key}' are "
                        f"integers in [0, {num_classes}); {fix}")
    bad = np.flatnonzero((labels < 0) | (labels >= num_classes))
    if len(bad):
        raise DataError(f"{where}: label {ys[bad[0]]} at row {bad[0]} ({len(bad)} such rows) is outside "
                        f"[0, {num_classes}) (the {num_classes} classes named by its meta file); {fix}")
    return data, ys


def _cifar_from_dicts(name: str, get: Callable[[str], dict], per_class: tuple[int | None, int | None],
                      display: str, source: str, kind: str) -> RawDataset:
    train_files, test_file, key, meta_file = _cifar_batches(name)

    def where(f: str) -> str:
        return f"{source}/{f}" if kind == "pickle" else f"{source}:{f}"

    meta = get(meta_file)
    names = (meta.get("label_names") or meta.get("fine_label_names")) if isinstance(meta, dict) else None
    classes = list(names or [])
    if not classes:
        raise DataError(f"{where(meta_file)} holds no class names (label_names / fine_label_names); "
                        f"replace it with the {meta_file} of a fresh copy of {display}")

    def split(files: list[str], limit: int | None) -> Split:
        images, labels, counts = [], [], {}
        for f in files:
            data, ys = _checked_batch(get(f), key, len(classes), where(f), display)
            for x, y in zip(data.reshape(-1, 3, 32, 32), ys):
                if limit is not None and counts.get(y, 0) >= limit:
                    continue
                counts[y] = counts.get(y, 0) + 1
                images.append(torch.from_numpy(x.copy()))
                labels.append(int(y))
        return Split(images, labels)

    return RawDataset(split(train_files, per_class[0]), split([test_file], per_class[1]),
                      classes, display, source, kind)


def read_cifar_pickles(name: str, located: Located,
                       per_class: tuple[int | None, int | None]) -> RawDataset:
    """CIFAR-10/100 from `cifar-10-batches-py` / `cifar-100-python` or their .tar.gz."""
    if located.kind == "pickle":
        def get(f: str) -> dict:
            p = located.path / f
            if not p.is_file():
                raise DataError(f"{p} is missing from the CIFAR pickle folder {located.path}")
            with open(p, "rb") as fh:
                return _unpickle(fh, str(p))
        return _cifar_from_dicts(name, get, per_class, located.display_name, str(located.path), "pickle")
    members: dict[str, bytes] = {}
    try:
        with tarfile.open(located.path, "r:*") as tar:
            for m in tar:
                if m.isfile():
                    members[Path(m.name).name] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"archive {located.path} is corrupt ({type(e).__name__}: {e}); "
                        "replace it with a fresh copy") from None

    def get_member(f: str) -> dict:
        if f not in members:
            raise DataError(f"archive {located.path} has no member '{f}'")
        return _unpickle(io.BytesIO(members[f]), f"{located.path}:{f}")
    return _cifar_from_dicts(name, get_member, per_class, located.display_name,
                             str(located.path), "pickle_archive")


def _decode(data: bytes, where: str) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.RGB)
    except RuntimeError as e:
        raise DataError(f"{where} is not a readable image ({e})") from None


def _select(entries: list[tuple[str, str]], limit: int | None) -> list[tuple[str, str]]:
    """First `limit` files per class by sorted name: a deterministic subset."""
    by_class: dict[str, list[str]] = {}
    for cls, f in sorted(entries):
        by_class.setdefault(cls, []).append(f)
    return [(c, f) for c in sorted(by_class) for f in by_class[c][:limit]]


def _empty_class(folder: str, split: str) -> DataError:
    return DataError(f"class folder {folder}/ holds no images ({', '.join(IMAGE_SUFFIXES)}): every folder "
                     f"under {split}/ is a class, so an empty one cannot be dropped silently; add its images "
                     "or remove the folder")


def _check_same_classes(where: str, splits: tuple[str, str], entries: dict[str, list[tuple[str, str]]]) -> None:
    """Both splits hold the same classes: labels are indices into one class list."""
    train, test = ({c for c, _ in entries[s]} for s in splits)
    if train != test:
        extra = "; ".join(f"only in {s}/: {', '.join(sorted(only))}"
                          for s, only in ((splits[0], train - test), (splits[1], test - train)) if only)
        raise DataError(f"{where}: {splits[0]}/ and {splits[1]}/ hold different classes ({extra}); every class "
                        "needs a folder of images in both splits: add the missing folders or remove the extra ones")


def _folder_entries(root: Path, split: str) -> list[tuple[str, str]]:
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(f"{root} has no '{split}/' folder; expected {root}/{split}/<class>/<image>")
    entries = []
    for c in sorted(split_dir.iterdir()):
        if c.is_dir():
            images = [(c.name, str(f)) for f in c.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES]
            if not images:
                raise _empty_class(str(c), split)
            entries += images
    return entries


def read_image_folder(info: DatasetInfo, located: Located,
                      per_class: tuple[int | None, int | None]) -> RawDataset:
    """An ImageFolder tree (`train/<class>/*`, `test|val/<class>/*`) or a tar of one."""
    splits = ("train", info.test_split)
    if located.kind == "folder":
        entries = {s: _folder_entries(located.path, s) for s in splits}
        _check_same_classes(str(located.path), splits, entries)
        chosen = {s: _select(entries[s], lim) for s, lim in zip(splits, per_class)}
        classes = sorted({c for c, _ in chosen["train"]})
        index = {c: i for i, c in enumerate(classes)}

        def split(s: str) -> Split:
            imgs, ys = [], []
            for c, f in chosen[s]:
                imgs.append(_decode(Path(f).read_bytes(), f))
                ys.append(index[c])
            return Split(imgs, ys)
        return RawDataset(split("train"), split(info.test_split), classes, located.display_name,
                          str(located.path), "folder")
    return _read_image_archive(info, located, per_class)


def _archive_layout(name: str, splits: tuple[str, str]) -> tuple[str, str] | None:
    parts = Path(name).parts
    for i, p in enumerate(parts[:-2]):
        if p in splits and len(parts) - i == 3 and Path(name).suffix.lower() in IMAGE_SUFFIXES:
            return p, parts[i + 1]
    return None


def _read_image_archive(info: DatasetInfo, located: Located,
                        per_class: tuple[int | None, int | None]) -> RawDataset:
    splits = ("train", info.test_split)
    try:
        with tarfile.open(located.path, "r:*") as tar:
            members = tar.getmembers()
            entries = {s: [] for s in splits}
            for n in (m.name for m in members if m.isfile()):
                lay = _archive_layout(n, splits)
                if lay:
                    entries[lay[0]].append((lay[1], n))
            if not entries["train"] or not entries[info.test_split]:
                raise DataError(f"archive {located.path} has no <root>/{{train,{info.test_split}}}/"
                                "<class>/<image> layout")
            filled = {(s, c) for s in splits for c, _ in entries[s]}
            for d in (Path(m.name) for m in members if m.isdir()):
                if len(d.parts) >= 2 and d.parts[-2] in splits and (d.parts[-2], d.name) not in filled:
                    raise _empty_class(f"{located.path}:{d.as_posix()}", d.parts[-2])
            _check_same_classes(f"archive {located.path}", splits, entries)
            chosen = {s: _select(entries[s], lim) for s, lim in zip(splits, per_class)}
            wanted = {n: (s, c) for s in splits for c, n in chosen[s]}
            classes = sorted({c for c, _ in chosen["train"]})
            index = {c: i for i, c in enumerate(classes)}
            decoded: dict[str, torch.Tensor] = {}
            for m in tar:
                if m.name in wanted:
                    decoded[m.name] = _decode(tar.extractfile(m).read(), f"{located.path}:{m.name}")
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise DataError(f"archive {located.path} is corrupt ({type(e).__name__}: {e}); "
                        "replace it with a fresh copy") from None

    def split(s: str) -> Split:
        return Split([decoded[n] for _, n in chosen[s]], [index[c] for c, _ in chosen[s]])
    return RawDataset(split("train"), split(info.test_split), classes, located.display_name,
                      str(located.path), "archive")


def read_download(info: DatasetInfo, located: Located,
                  per_class: tuple[int | None, int | None]) -> RawDataset:
    """torchvision download into data/raw, then read as pickles."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, info.torchvision)
    cls(str(located.path), train=True, download=True)
    cls(str(located.path), train=False, download=True)
    folder = located.path / info.pickle_dirs[0]
    return read_cifar_pickles(info.name, Located("pickle", folder, info.display_name), per_class)


def read(name: str, located: Located, per_class: tuple[int | None, int | None]) -> RawDataset:
    """Read a located dataset, keeping at most `per_class` (train, test) images per class."""
    info: DatasetInfo = DATASETS[name]
    if located.kind in ("pickle", "pickle_archive"):
        return read_cifar_pickles(name, located, per_class)
    if located.kind == "download":
        return read_download(info, located, per_class)
    return read_image_folder(info, located, per_class)


def iter_classes(labels: list[int]) -> Iterator[tuple[int, int]]:
    """(class index, count) pairs in class order."""
    counts: dict[int, int] = {}
    for y in labels:
        counts[y] = counts.get(y, 0) + 1
    yield from sorted(counts.items())
