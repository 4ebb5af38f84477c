"""One atomic-write mechanism (layout.atomic_path) for every file nascore writes: a temp name of the
writing process beside the target, then a rename; a failing writer keeps the old file and no temp."""
import os

import pytest
import torch

from nascore import layout
from nascore.genotype import load_genotype
from nascore.layout import atomic_path, read_json, write_json
from nascore.report.markdown import write_markdown

from conftest import REPO


def test_a_failing_writer_keeps_the_old_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "metrics.json"
    write_json(target, {"top1_err": 3.0})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"top1_err": ')  # half written, then the writer fails
            raise RuntimeError("killed mid-write")
    assert read_json(target) == {"top1_err": 3.0} and sorted(tmp_path.iterdir()) == [target]


def test_every_writer_goes_through_a_temp_name_of_its_process(tmp_path, monkeypatch):
    used = []
    real = layout.temp_name
    monkeypatch.setattr(layout, "temp_name", lambda path: used.append(real(path).name) or real(path))
    write_json(tmp_path / "a.json", {"x": 1})
    layout.write_tsv(tmp_path / "b.tsv", [{"epoch": 1, "w": 0.5}], ["epoch", "w"])
    write_markdown(tmp_path / "c.md", ["# c"])
    layout.save_atomically({"w": torch.zeros(2)}, tmp_path / "d.pt")
    genotype = load_genotype(REPO / "packages/nascore/src/nascore/genotypes/darts_v2.json")
    genotype.save(tmp_path / "e.json")
    pid = os.getpid()
    assert used == [f".{n}.{pid}.tmp" for n in ("a.json", "b.tsv", "c.md", "d.pt", "e.json")]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.tsv", "c.md", "d.pt", "e.json"]
