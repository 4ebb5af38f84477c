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


def alpha_rows(path):
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["epoch", "cell", "op", "weight"]
    return [{"epoch": int(e), "cell": c, "op": o, "weight": float(w)}
            for e, c, o, w in (line.split("\t") for line in lines[1:])]


def test_search_derives_one_normal_cell_per_level(cifar_project, capsys):
    assert main(["--root", str(cifar_project), "search", "--method", "mldarts"]) == 0
    g = json.loads((cifar_project / "runs" / "mldarts" / "search" / "genotype.json").read_text())
    assert set(g["cells"]) == {"normal_low", "normal_mid", "normal_high", "reduce_1", "reduce_2"}
    hist = json.loads((cifar_project / "runs" / "mldarts" / "search" / "alpha_history.json").read_text())
    assert {"skips_normal_low", "skips_normal_mid", "skips_normal_high", "entropy_normal_low",
            "entropy_reduce_2"} <= set(hist["epochs"][-1])
    # the alpha traces dvc plots draws: per epoch, cell type and op, the op's weight averaged over the edges
    rows = alpha_rows(cifar_project / "reports" / "plots" / "mldarts-search-alphas.tsv")
    assert len(rows) == len(hist["epochs"]) * 5 * len(hist["primitives"])
    last = hist["epochs"][-1]
    for cell, edges in last["alphas"].items():
        mine = {r["op"]: r["weight"] for r in rows if r["epoch"] == last["epoch"] and r["cell"] == cell}
        assert sum(mine.values()) == pytest.approx(1.0, abs=1e-4)  # each cell type's weights sum to 1
        for k, op in enumerate(hist["primitives"]):
            assert mine[op] == pytest.approx(sum(e[k] for e in edges) / len(edges), abs=1e-6)
    capsys.readouterr()
    assert main(["info", str(cifar_project / "runs" / "mldarts" / "search" / "genotype.json"),
                 "--layers", "8", "--channels", "8"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["layers"] == 8 and info["params_m"] > 0  # nascore info builds multi-level genotypes


# -- ImageNet training: P-DARTS' recipe (seed 002 sec. 2.4.2 cites [15] = P-DARTS) ----------------------------

def test_paper_profile_trains_imagenet_with_the_pdarts_recipe(project):
    tp = METHODS["mldarts"].from_project(project, "paper").p.finetune.imagenet
    assert (tp.layers, tp.C, tp.epochs, tp.batch_size, tp.lr) == (14, 48, 250, 1024, 0.5)
    assert (tp.schedule, tp.warmup_epochs, tp.tail_epochs) == ("linear", 5, 5)
    assert (tp.momentum, tp.weight_decay, tp.label_smoothing) == (0.9, 3e-5, 0.1)
    assert tp.auxiliary and tp.auxiliary_weight == 0.4 and tp.drop_path_prob == 0.0


def _lrs(method, tp, epochs):
    import torch

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], tp.lr, momentum=tp.momentum)
    sched = method.lr_scheduler(opt, tp)
    out = {}
    for e in epochs:
        sched.step(e)
        out[e] = opt.param_groups[0]["lr"]
    return out, sched


def test_linear_schedule_follows_pdarts_train_imagenet(project):
    method = METHODS["mldarts"].from_project(project, "paper")
    tp = method.p.finetune.imagenet
    lrs, sched = _lrs(method, tp, range(tp.epochs))
    # warm-up: adjust_lr's value times (epoch + 1) / 5 over epochs 0..4
    assert lrs[0] == pytest.approx(0.5 * 245 / 245 / 5) and lrs[2] == pytest.approx(0.5 * 243 / 245 * 3 / 5)
    # peak at the last warm-up epoch, just under the nominal 0.5; then linear decay
    assert max(lrs, key=lrs.get) == 4 and lrs[4] == pytest.approx(0.5 * 241 / 245)
    assert lrs[5] == pytest.approx(0.5 * 240 / 245) and lrs[125] == pytest.approx(0.5 * 120 / 245)
    # the last 5 epochs: a 5x gentler slope, ending one step short of 0
    assert lrs[244] == pytest.approx(0.5 / 245) and lrs[245] == pytest.approx(0.5 / 245)
    assert lrs[249] == pytest.approx(0.5 / 1225)
    assert all(lrs[e + 1] <= lrs[e] for e in range(4, 249))
    # stateless but for the base lr: a resumed run sets the same lr
    _, fresh = _lrs(method, tp, [])
    fresh.load_state_dict(sched.state_dict())
    fresh.step(100)
    assert fresh.optimizer.param_groups[0]["lr"] == pytest.approx(lrs[100])


def test_small_profiles_keep_darts_imagenet_training(project):
    """quick and ci train the tiny ImageNet networks as before: darts' step schedule, field for field."""
    for profile in ("quick", "ci"):
        ml = METHODS["mldarts"].from_project(project, profile).p.finetune.imagenet
        da = METHODS["darts"].from_project(project, profile).p.finetune.imagenet
        assert ml.schedule == "step"
        assert {f: getattr(ml, f) for f in vars(da)} == vars(da)


def test_linear_schedule_longer_than_the_training_is_rejected(project):
    set_yaml(project / "params" / "mldarts.yaml", "finetune.imagenet.epochs", 10)
    with pytest.raises(ParamsError, match=r"finetune.imagenet: warmup_epochs \+ tail_epochs = 10 with epochs = 10"):
        METHODS["mldarts"].from_project(project, "paper").params


def test_finetune_builds_its_schedule_through_the_method(project, monkeypatch):
    """DartsMethod.finetune asks self.lr_scheduler, so mldarts' linear schedule is the one trained with."""
    from conftest import write_image_folder
    from nascore.methods import darts
    from nascore.methods.mldarts import MldartsMethod

    class Built(Exception):
        pass

    def spy(self, optimizer, tp):
        raise Built(tp.schedule)

    write_image_folder(project / "data" / "raw" / "imagenette-224", per_class=2, size=40, test_split="val")
    assert main(["--root", str(project), "prepare", "--dataset", "imagenette"]) == 0
    set_yaml(project / "params" / "mldarts.yaml", "finetune.genotype", "darts_v2")
    monkeypatch.setattr(MldartsMethod, "lr_scheduler", spy)
    monkeypatch.setattr(darts, "_scheduler", lambda *a: pytest.fail("finetune built its schedule without "
                                                                     "self.lr_scheduler"), raising=False)
    with pytest.raises(Built, match="step"):
        METHODS["mldarts"].from_project(project).finetune("imagenette")
