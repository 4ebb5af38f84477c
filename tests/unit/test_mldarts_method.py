"""mldarts as a method: a composition of DARTS plus the multi-level supernet and entropy term."""
import json

import pytest

from nascore.cli import main
from nascore.config import ParamsError
from nascore.methods import METHODS
from nascore.supernets import MultiLevelSupernet

from conftest import set_yaml


def test_mldarts_composes_the_new_pieces(project):
    method = METHODS["mldarts"].from_project(project, "paper")
    assert isinstance(method.build_supernet(10), MultiLevelSupernet)
    assert method.p.search.gamma == 1.0 and method.p.search.order == 1
    assert method.arch_regulariser() is not None
    assert method.run_tags() == {"gamma": "1"}


def test_gamma_zero_disables_the_entropy_term(project):
    set_yaml(project / "params" / "mldarts.yaml", "search.gamma", 0)
    method = METHODS["mldarts"].from_project(project, "paper")
    assert method.arch_regulariser() is None


def test_second_order_is_rejected_with_the_reason(project):
    set_yaml(project / "params" / "mldarts.yaml", "search.order", 2)
    with pytest.raises(ParamsError, match=r"search.order: got 2; mldarts uses first-order updates"):
        METHODS["mldarts"].from_project(project, "paper").params


def test_too_shallow_supernet_is_rejected(project):
    set_yaml(project / "params" / "mldarts.yaml", "search.supernet.layers", 4)
    with pytest.raises(ParamsError, match=r"supernet.layers: got 4; the multi-level supernet needs .* >= 5"):
        METHODS["mldarts"].from_project(project, "paper").params


def test_search_derives_one_normal_cell_per_level(cifar_project, capsys):
    assert main(["--root", str(cifar_project), "search", "--method", "mldarts"]) == 0
    g = json.loads((cifar_project / "runs" / "mldarts" / "search" / "genotype.json").read_text())
    assert set(g["cells"]) == {"normal_low", "normal_mid", "normal_high", "reduce_1", "reduce_2"}
    hist = json.loads((cifar_project / "runs" / "mldarts" / "search" / "alpha_history.json").read_text())
    assert {"skips_normal_low", "skips_normal_mid", "skips_normal_high", "entropy_normal_low",
            "entropy_reduce_2"} <= set(hist["epochs"][-1])
    capsys.readouterr()
    assert main(["info", str(cifar_project / "runs" / "mldarts" / "search" / "genotype.json"),
                 "--layers", "8", "--channels", "8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 8 and info["params_m"] > 0  # nascore info builds multi-level genotypes
