"""Finding and reading data: lookup order, formats, and clear errors on missing/corrupt data."""
import json
import pickle

import pytest
import torch

from nascore.data.params import DataParams
from nascore.data.prepare import NotRun, load_prepared, prepare
from nascore.data.sources import DataError, DataNotFound, locate, read

from conftest import tar_folder, write_cifar_pickles, write_image_folder


def test_lookup_order_explicit_root_first_then_data_raw(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    proj = tmp_path / "proj"
    write_cifar_pickles(proj / "data" / "raw" / "cifar-10-batches-py")
    explicit = tmp_path / "elsewhere"
    write_image_folder(explicit / "cifar10", classes=[f"c{i}" for i in range(3)])
    assert locate("cifar10", None, proj).kind == "pickle"
    found = locate("cifar10", str(explicit), proj)
    assert found.kind == "folder" and found.path == (explicit / "cifar10").resolve()
    monkeypatch.setenv("NASREPRO_DATA", str(explicit))
    assert locate("cifar10", None, proj).kind == "folder"


def test_shared_data_folder_is_searched(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    proj = tmp_path / "main"
    proj.mkdir()
    shared = tmp_path / "shared" / "data"
    shared.mkdir(parents=True)
    tar_folder(write_image_folder(tmp_path / "src" / "cifar10-jpeg", suffix=".jpg"), shared / "cifar10-jpeg.tar.gz")
    found = locate("cifar10", None, proj)
    assert found.kind == "archive" and found.display_name == "CIFAR-10 (JPEG q75 re-encoding)"


def test_missing_dataset_names_every_place_and_how_to_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    with pytest.raises(DataNotFound) as e:
        locate("cifar100", None, tmp_path / "proj")
    msg = str(e.value)
    assert "no cifar100 data found" in msg
    assert str(tmp_path / "proj" / "data" / "raw" / "cifar-100-python") in msg
    assert str(tmp_path / "shared" / "data" / "cifar-100-python") in msg
    assert "torchvision download (disabled: set data.allow_download: true)" in msg
    assert "data.root" in msg


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_pickles_read_with_per_class_subset(tmp_path, name):
    folder = write_cifar_pickles(tmp_path / "p", name, train_per_class=3, test_per_class=2)
    from nascore.data.sources import Located
    raw = read(name, Located("pickle", folder, name), (2, 1))
    n = 10 if name == "cifar10" else 100
    assert len(raw.train.images) == 2 * n and len(raw.test.images) == n
    assert raw.train.images[0].shape == (3, 32, 32) and raw.train.images[0].dtype == torch.uint8
    assert len(raw.classes) == n


def test_corrupted_pickle_is_named(tmp_path):
    folder = write_cifar_pickles(tmp_path / "cifar-10-batches-py")
    (folder / "data_batch_1").write_bytes(b"\x80\x04garbage-not-a-pickle")
    from nascore.data.sources import Located
    with pytest.raises(DataError, match=r"data_batch_1 is corrupt or not a CIFAR pickle"):
        read("cifar10", Located("pickle", folder, "CIFAR-10"), (None, None))


def test_corrupted_archive_is_named(tmp_path):
    archive = tar_folder(write_image_folder(tmp_path / "src" / "cifar10-jpeg"), tmp_path / "cifar10-jpeg.tar.gz")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    from nascore.data.sources import Located
    with pytest.raises(DataError, match=r"archive .*cifar10-jpeg.tar.gz is corrupt"):
        read("cifar10", Located("archive", archive, "CIFAR-10"), (None, None))


def test_image_folder_and_archive_read_the_same_images(tmp_path):
    from nascore.data.sources import Located
    folder = write_image_folder(tmp_path / "src" / "imagenette-224", test_split="val", size=48)
    archive = tar_folder(folder, tmp_path / "imagenette-224.tar")
    a = read("imagenette", Located("folder", folder, "x"), (2, 1))
    b = read("imagenette", Located("archive", archive, "x"), (2, 1))
    assert a.classes == b.classes == ["a", "b", "c"]
    assert a.train.labels == b.train.labels == [0, 0, 1, 1, 2, 2]
    assert all(torch.equal(x, y) for x, y in zip(a.train.images, b.train.images))


def test_prepare_writes_tensors_manifest_and_checksum(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    proj = tmp_path / "proj"
    write_cifar_pickles(proj / "data" / "raw" / "cifar-10-batches-py", train_per_class=3, test_per_class=2)
    out = proj / "data" / "prepared" / "cifar10"
    m = prepare("cifar10", DataParams(), proj, out)
    assert m["status"] == "ok" and m["counts"]["train"]["class0"] == 3 and m["counts"]["test"]["class9"] == 2
    tensors, manifest = load_prepared(out)
    assert tensors["train_x"].shape == (30, 3, 40, 40) and tensors["train_x"].dtype == torch.uint8
    assert tensors["train_x32"].shape == (30, 3, 32, 32) and tensors["test_x"].shape == (20, 3, 32, 32)
    assert manifest == json.loads((out / "manifest.json").read_text())
    (out / "tensors.pt").write_bytes((out / "tensors.pt").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(DataError, match="does not match its manifest checksum"):
        load_prepared(out)


@pytest.mark.parametrize("where", ["project", "env", "explicit", "shared"])
def test_prepared_outputs_hold_no_machine_path(tmp_path, monkeypatch, where):
    """DVC hashes the manifest: the source (and a not-run reason) is named as the same on every
    checkout, so a fresh clone elsewhere gets the same prepared-data hash and reruns nothing."""
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    proj = tmp_path / "checkout" / "proj"
    raw = {"project": proj / "data" / "raw", "env": tmp_path / "datasets", "explicit": tmp_path / "mine",
           "shared": proj.parent / "shared" / "data"}[where]
    write_cifar_pickles(raw / "cifar-10-batches-py", train_per_class=2, test_per_class=1)
    if where == "env":
        monkeypatch.setenv("NASREPRO_DATA", str(raw))
    params = DataParams(root="~/mine") if where == "explicit" else DataParams()
    if where == "explicit":
        monkeypatch.setenv("HOME", str(tmp_path))
    out = proj / "data" / "prepared" / "cifar10"
    m = prepare("cifar10", params, proj, out)
    expected = {"project": "data/raw", "env": "$NASREPRO_DATA", "explicit": "~/mine",
                "shared": "../shared/data"}[where]
    assert m["source"]["path"] == f"{expected}/cifar-10-batches-py"
    missing = prepare("cifar100", params, proj, proj / "data" / "prepared" / "cifar100")
    assert expected in missing["reason"]
    for f in (out / "manifest.json", proj / "data" / "prepared" / "cifar100" / "manifest.json"):
        assert str(tmp_path) not in f.read_text()


def test_scaling_below_crop_pads_with_mean_colour():
    from nascore.data.prepare import scale_keep_aspect
    img = torch.full((3, 32, 32), 200, dtype=torch.uint8)
    fill = torch.tensor([10, 20, 30], dtype=torch.uint8)
    out = scale_keep_aspect(img, 24, 32, fill)
    assert out.shape == (3, 32, 32)
    assert out[:, 4:28, 4:28].eq(200).all() and out[:, 0, 0].tolist() == [10, 20, 30]


def test_missing_dataset_is_recorded_not_run(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    out = tmp_path / "proj" / "data" / "prepared" / "cifar100"
    m = prepare("cifar100", DataParams(), tmp_path / "proj", out)
    assert m["status"] == "not run" and m["reason"].startswith("not run: no CIFAR-100 data at data/raw")
    with pytest.raises(NotRun, match="no CIFAR-100 data"):
        load_prepared(out)


def test_failed_prepare_leaves_previous_output_untouched(tmp_path, monkeypatch):
    monkeypatch.delenv("NASREPRO_DATA", raising=False)
    proj = tmp_path / "proj"
    folder = write_cifar_pickles(proj / "data" / "raw" / "cifar-10-batches-py")
    out = proj / "data" / "prepared" / "cifar10"
    prepare("cifar10", DataParams(), proj, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    (folder / "test_batch").write_bytes(pickle.dumps({"data": [1, 2, 3]})[:5])
    with pytest.raises(DataError):
        prepare("cifar10", DataParams(), proj, out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in out.parent.iterdir()) == [".cifar10.lock", "cifar10"]  # no temp folder left
