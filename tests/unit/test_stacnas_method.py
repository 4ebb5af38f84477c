"""stacnas as a method: DARTS' search run twice, stage 1 over group representatives and stage 2
over the activated groups, one-level by default; params say which data the updates see."""
import json

import pytest

from nascore.cli import main
from nascore.config import ParamsError
from nascore.methods import METHODS

from conftest import set_yaml


def test_paper_settings_are_one_level_with_fixed_groups(project):
    m = METHODS["stacnas"].from_project(project, "paper")
    s = m.p.search
    assert m.one_level() and s.train_portion == 1.0 and s.grouping == "fixed"
    assert (s.supernet.layers, s.stage2.layers, s.epochs, s.stage2.epochs) == (14, 20, 80, 80)
    assert m.search_stages == ("stage1", "stage2")


@pytest.mark.parametrize("key,value,message", [
    ("search.groups", [["max_pool_3x3"], ["skip_connect"]], r"search.groups: got .* must split"),
    ("search.optimisation", "bi_level", r"search.train_portion: got 1.0; bi-level needs held-out images"),
    ("search.order", 2, r"search.order: got 2; one-level optimisation has no unrolled step"),
    ("search.grouping", "kmeans", r"search.grouping"),
])
def test_bad_params_are_rejected_with_the_reason(project, key, value, message):
    set_yaml(project / "params" / "stacnas.yaml", key, value)
    with pytest.raises(ParamsError, match=message):
        METHODS["stacnas"].from_project(project, "paper").params


def test_unknown_stage_is_rejected(project):
    m = METHODS["stacnas"].from_project(project, "paper")
    with pytest.raises(ParamsError, match=r"no search stage 'search'; allowed: stage1, stage2"):
        m.search("search")


def _run(project, *stages):
    for st in stages:
        assert main(["--root", str(project), "search", "--method", "stacnas", "--stage", st]) == 0


def test_two_stages_end_to_end(cifar_project):
    _run(cifar_project, "stage1", "stage2")
    s1 = cifar_project / "runs" / "stacnas" / "search_stage1"
    hist1 = json.loads((s1 / "alpha_history.json").read_text())
    assert hist1["primitives"] == ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3"]
    plan = json.loads((cifar_project / "runs" / "stacnas" / "search" / "stage2_edges.json").read_text())
    groups = json.loads((s1 / "groups.json").read_text())["groups"]
    hist2 = json.loads((cifar_project / "runs" / "stacnas" / "search" / "alpha_history.json").read_text())
    prims2 = hist2["primitives"]
    for key, active in plan["active_group"].items():
        last = hist2["epochs"][-1]["alphas"][key]
        for e, g in enumerate(active):
            assert plan["edge_ops"][key][e] == ["none", *groups[g]]
            held = {prims2[k] for k, w in enumerate(last[e]) if w > 0}
            assert held == {"none", *groups[g]}  # stage 2 weighs exactly those ops
    # its alpha trace: an op an edge does not hold counts 0, so each cell type's weights still sum to 1
    trace = (cifar_project / "reports" / "plots" / "stacnas-search-alphas.tsv").read_text().splitlines()[1:]
    sums: dict = {}
    for e, cell, _, w in (line.split("\t") for line in trace):
        sums[(e, cell)] = sums.get((e, cell), 0.0) + float(w)
    assert len(sums) == 2 * len(hist2["epochs"]) and all(abs(v - 1) < 1e-4 for v in sums.values())
    genotype = json.loads((cifar_project / "runs" / "stacnas" / "search" / "genotype.json").read_text())
    for key, cell in genotype["cells"].items():
        for (op, src), e in zip(cell["edges"], range(len(cell["edges"]))):
            assert op != "none"
    metrics = json.loads((cifar_project / "reports" / "metrics" / "stacnas-search.json").read_text())
    assert metrics["optimisation"] == "one-level" and metrics["status"] == "ok"


class _Stop(Exception):
    pass


@pytest.mark.parametrize("mode", ["one_level", "bi_level"])
def test_updates_see_the_data_the_params_say(cifar_project, monkeypatch, mode):
    """ci profile: 80% of the 200 images for S_train, 20% held out. One-level feeds the strategy
    S_train batches only (held-out images just measure the supernet); bi-level pairs each
    S_train batch with a held-out batch for the architecture step."""
    import nascore.methods.darts as darts

    seen = {}

    def spy(strategy, batches, *args, **kwargs):
        seen["one_level"], seen["batches"] = strategy.one_level, batches
        raise _Stop

    monkeypatch.setattr(darts, "Trainer", spy)
    set_yaml(cifar_project / "params" / "stacnas.yaml", "search.optimisation", mode)
    set_yaml(cifar_project / "params" / "stacnas.yaml", "search.train_portion", 0.5)  # the ci profile says 0.8
    method = METHODS["stacnas"].from_project(cifar_project)
    with pytest.raises(_Stop):
        method.search("stage1")
    b = seen["batches"]
    if mode == "one_level":
        assert seen["one_level"] and len(b.x) == 160
        x, y = next(iter(b.epoch(0)))  # a batch is (x, y): nothing held out rides along
        assert x.shape[0] == y.shape[0] == 16
    else:
        assert not seen["one_level"] and (len(b.train.x), len(b.val.x)) == (160, 40)
        held_out = {tuple(t.flatten()[:64].tolist()) for t in b.val.x}
        assert not held_out & {tuple(t.flatten()[:64].tolist()) for t in b.train.x}


def test_clustered_groups_drive_both_stages(cifar_project):
    set_yaml(cifar_project / "params" / "stacnas.yaml", "search.grouping", "cluster")
    _run(cifar_project, "stage1", "stage2")
    found = json.loads((cifar_project / "runs" / "stacnas" / "search_stage1" / "groups.json").read_text())
    ops = sorted(op for g in found["groups"] for op in g)
    assert ops == sorted(["max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                          "dil_conv_3x3", "dil_conv_5x5"])
    hist1 = json.loads((cifar_project / "runs" / "stacnas" / "search_stage1" / "alpha_history.json").read_text())
    assert hist1["primitives"] == ["none"] + [g[0] for g in found["groups"]]
    assert len(found["correlation"]) == 8
