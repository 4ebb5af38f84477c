"""Bad data is refused where it is read (issue 13, item 7): each error names the file, what is wrong and
how to fix it, and prepare writes nothing (no prepared folder, no temp folder)."""
import pickle
import re
import shutil

import numpy as np
import pytest

from nascore.cli import main

from conftest import set_yaml, tar_folder, write_cifar_pickles, write_image_folder


def _prepare(project, capsys, dataset="cifar10") -> str:
    """Run prepare, expect a data error (rc 2) that left nothing under data/prepared; its message."""
    assert main(["--root", str(project), "prepare", "--dataset", dataset]) == 2
    assert not (project / "data" / "prepared").exists()
    return capsys.readouterr().err


@pytest.fixture
def raw(project):
    """The project's data/raw/, where lookup finds the bad inputs."""
    (project / "data" / "raw").mkdir(parents=True)
    return project / "data" / "raw"


def _edit(path, change) -> None:
    with open(path, "rb") as f:
        d = pickle.load(f)
    change(d)
    with open(path, "wb") as f:
        pickle.dump(d, f)


def _rows(d, n):
    d["data"] = d["data"][:n]


def _set_label(d, key, value):
    d[key][3] = value


@pytest.mark.parametrize("name, batch, change, expected", [
    ("cifar10", "data_batch_1", lambda d: _rows(d, 39),
     r"data_batch_1: 39 image rows but 40 labels in 'labels', expected one label per row"),
    ("cifar10", "test_batch", lambda d: d.update(data=d["data"][:, :3000]),
     r"test_batch: 'data' is uint8 of shape \(20, 3000\), expected uint8 rows of 3072 pixels"),
    ("cifar10", "data_batch_1", lambda d: d.update(data=d["data"].astype(np.float32) / 255),
     r"data_batch_1: 'data' is float32 of shape \(40, 3072\), expected uint8"),
    ("cifar10", "data_batch_1", lambda d: _set_label(d, "labels", 12),
     r"data_batch_1: label 12 at row 3 \(1 such rows\) is outside \[0, 10\)"),
    ("cifar10", "test_batch", lambda d: _set_label(d, "labels", -1),
     r"test_batch: label -1 at row 3 \(1 such rows\) is outside \[0, 10\)"),
    ("cifar10", "data_batch_1", lambda d: _set_label(d, "labels", 2.0),
     r"data_batch_1: label 2.0 at row 3 is not an integer; labels in 'labels' are integers in \[0, 10\)"),
    ("cifar100", "train", lambda d: _set_label(d, "fine_labels", 100),
     r"cifar-100-python/train: label 100 at row 3 \(1 such rows\) is outside \[0, 100\)"),
])
def test_bad_cifar_batches_are_refused(project, capsys, name, batch, change, expected):
    folder = write_cifar_pickles(project / "data" / "raw" / ("cifar-10-batches-py" if name == "cifar10"
                                                             else "cifar-100-python"), name,
                                 train_per_class=4, test_per_class=2)
    _edit(folder / batch, change)
    err = _prepare(project, capsys, name)
    assert str(folder / batch) in err and re.search(expected, err), err
    assert f"replace it with a fresh copy of {'CIFAR-10' if name == 'cifar10' else 'CIFAR-100'}" in err


def test_bad_batch_inside_an_archive_names_the_member(project, raw, capsys):
    folder = write_cifar_pickles(project / "src" / "cifar-10-batches-py")
    _edit(folder / "test_batch", lambda d: _set_label(d, "labels", 10))
    archive = tar_folder(folder, raw / "cifar-10-python.tar.gz")
    assert f"{archive}:test_batch: label 10 at row 3" in _prepare(project, capsys)


def test_meta_without_class_names_is_refused(project, capsys):
    folder = write_cifar_pickles(project / "data" / "raw" / "cifar-10-batches-py")
    _edit(folder / "batches.meta", lambda d: d.update(label_names=[]))
    assert f"{folder}/batches.meta holds no class names" in _prepare(project, capsys)


@pytest.mark.parametrize("packed", [False, True])
def test_a_class_in_one_split_only_is_named(project, raw, capsys, packed):
    tree = write_image_folder(project / "src" / "cifar10-jpeg", classes=("a", "b"), per_class=1, suffix=".jpg")
    write_image_folder(project / "src" / "extra", classes=("z",), per_class=1, suffix=".jpg")
    shutil.move(project / "src" / "extra" / "test" / "z", tree / "test" / "z")
    if packed:
        tar_folder(tree, raw / "cifar10-jpeg.tar.gz")
    else:
        shutil.move(tree, raw / "cifar10")
    err = _prepare(project, capsys)
    assert "train/ and test/ hold different classes (only in test/: z)" in err
    assert "add the missing folders or remove the extra ones" in err


@pytest.mark.parametrize("packed", [False, True])
def test_an_empty_class_folder_is_named(project, raw, capsys, packed):
    tree = write_image_folder(project / "src" / "cifar10-jpeg", classes=("a", "b"), per_class=1, suffix=".jpg")
    (tree / "train" / "c").mkdir()
    (tree / "train" / "c" / "notes.txt").write_text("not an image")
    if packed:
        archive = tar_folder(tree, raw / "cifar10-jpeg.tar.gz")
        where = f"{archive}:cifar10-jpeg/train/c"
    else:
        where = shutil.move(tree, raw / "cifar10") / "train" / "c"
    err = _prepare(project, capsys)
    assert f"class folder {where}/ holds no images (.png, .jpg, .jpeg, .bmp): every folder under train/ is a class" in err
    assert "add its images or remove the folder" in err


def test_explicit_root_that_does_not_exist_is_an_error_not_a_fallback(project, capsys, tmp_path):
    write_cifar_pickles(project / "data" / "raw" / "cifar-10-batches-py")  # what a fallback would find
    set_yaml(project / "params" / "data.yaml", "data.root", str(tmp_path / "no-such-dir"))
    err = _prepare(project, capsys)
    assert f"data.root (params/data.yaml, or the profile's data section in params/profiles.yaml) is " \
           f"'{tmp_path / 'no-such-dir'}', which does not exist" in err
    assert "set data.root: null" in err


def test_nasrepro_data_that_does_not_exist_is_an_error_not_a_fallback(project, capsys, tmp_path, monkeypatch):
    write_cifar_pickles(project / "data" / "raw" / "cifar-10-batches-py")
    monkeypatch.setenv("NASREPRO_DATA", str(tmp_path / "gone"))
    err = _prepare(project, capsys, "cifar100")  # would otherwise be recorded "not run" with rc 0
    assert f"$NASREPRO_DATA is '{tmp_path / 'gone'}', which does not exist" in err and "unset it" in err
