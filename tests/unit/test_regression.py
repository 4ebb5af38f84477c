"""The metric regression check: within bands passes, a worse metric fails with a table."""
import io
import json

from nascore.regression import Band, check_metrics, compare


def _write(d, name, data):
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(data))


def test_compare_directions_and_tolerances():
    bands = {"top1_err": Band("lower", abs_tol=1.0), "params_m": Band("equal", rel_tol=0.1)}
    base = {"m": {"status": "ok", "top1_err": 10.0, "params_m": 2.0}}
    ok = compare(base, {"m": {"status": "ok", "top1_err": 10.9, "params_m": 2.19}}, bands)
    assert [r["status"] for r in ok] == ["ok", "ok"]
    bad = compare(base, {"m": {"status": "ok", "top1_err": 11.5, "params_m": 1.7}}, bands)
    assert [r["status"] for r in bad] == ["REGRESSED", "REGRESSED"]
    better = compare(base, {"m": {"status": "ok", "top1_err": 2.0, "params_m": 2.0}}, bands)
    assert all(r["status"] == "ok" for r in better)


def test_check_metrics_prints_table_and_fails(tmp_path):
    bands = tmp_path / "bands.yaml"
    bands.write_text("bands:\n  top1_err: {better: lower, abs_tol: 2.0}\n")
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"darts-cifar10": {"status": "ok", "top1_err": 50.0},
                                "darts-cifar100": {"status": "not run"}}))
    _write(tmp_path / "m", "darts-cifar10", {"status": "ok", "top1_err": 55.0})
    out = io.StringIO()
    assert check_metrics(base, tmp_path / "m", bands, out) == 1
    text = out.getvalue()
    assert "darts-cifar10  top1_err  50" in text and "+5" in text and "REGRESSED" in text
    _write(tmp_path / "m", "darts-cifar10", {"status": "ok", "top1_err": 51.0})
    assert check_metrics(base, tmp_path / "m", bands, io.StringIO()) == 0
    _write(tmp_path / "m", "darts-cifar10", {"status": "not run"})
    assert check_metrics(base, tmp_path / "m", bands, io.StringIO()) == 1


def test_a_changed_genotype_fails_however_close_the_floats(tmp_path):
    """exact fields (params/regression.yaml: genotype_hash): the search found another architecture."""
    bands = tmp_path / "bands.yaml"
    bands.write_text("bands:\n  top1_err: {better: lower, abs_tol: 2.0}\nexact: [genotype_hash]\n")
    base = tmp_path / "baseline.json"
    base.write_text(json.dumps({"darts-search": {"status": "ok", "genotype_hash": "f22fd8a2d8aa"},
                                "darts-cifar10": {"status": "ok", "top1_err": 50.0, "genotype_hash": "f22fd8a2d8aa"}}))
    _write(tmp_path / "m", "darts-search", {"status": "ok", "genotype_hash": "f22fd8a2d8aa"})
    _write(tmp_path / "m", "darts-cifar10", {"status": "ok", "top1_err": 50.0, "genotype_hash": "f22fd8a2d8aa"})
    assert check_metrics(base, tmp_path / "m", bands, io.StringIO()) == 0
    _write(tmp_path / "m", "darts-search", {"status": "ok", "genotype_hash": "70b53dc0282c"})
    out = io.StringIO()
    assert check_metrics(base, tmp_path / "m", bands, out) == 1
    assert "darts-search   genotype_hash  f22fd8a2d8aa  70b53dc0282c" in out.getvalue() and "CHANGED" in out.getvalue()
