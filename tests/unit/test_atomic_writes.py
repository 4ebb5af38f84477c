"""One atomic-write mechanism (layout.atomic_path) for every file nascore writes: a temp name of the
writing process beside the target, then a rename; a failing writer keeps the old file and no temp; a
killed writer's temp is swept by the next stage, a live writer's is not."""
import os
import subprocess
import sys

import pytest
import torch

from nascore import layout
from nascore.genotype import load_genotype
from nascore.layout import atomic_path, read_json, write_json
from nascore.lock import sweep_temp
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


def test_the_sweep_removes_dead_writers_temps_only(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    gone = tmp_path / f".metrics.json.{int(dead.stdout)}.tmp"  # its writer has exited
    mine = tmp_path / f".other.json.{os.getpid()}.tmp"       # a live writer (this process) mid-write
    keep = tmp_path / "metrics.json"
    for f in (gone, mine, keep):
        f.write_text("{}")
    sweep_temp(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([mine.name, keep.name])
