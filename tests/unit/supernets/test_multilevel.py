"""Multi-level supernet (seed 002): per-level alphas are independent; the derived genotype
holds one normal cell per level and builds an evaluation network level by level."""
import torch
import torch.nn.functional as F

from nascore.models import create_model
from nascore.supernets import MultiLevelSupernet


def test_alpha_groups_follow_the_levels():
    net = MultiLevelSupernet(C=4, num_classes=10, layers=8)  # reductions at 2 and 5
    assert net.cell_keys == ["normal_low", "normal_low", "reduce_1", "normal_mid", "normal_mid",
                             "reduce_2", "normal_high", "normal_high"]
    assert set(net.alphas) == {"normal_low", "normal_mid", "normal_high", "reduce_1", "reduce_2"}


def test_a_step_on_one_levels_loss_leaves_the_other_levels_unchanged():
    torch.manual_seed(0)
    net = MultiLevelSupernet(C=4, num_classes=3, layers=5)
    before = {k: a.detach().clone() for k, a in net.alphas.items()}
    opt = torch.optim.SGD(net.arch_parameters(), lr=0.1)
    # a loss that reads only the mid level's alpha (through its softmax)
    loss = (net.alpha_probs()["normal_mid"] * torch.randn(14, 8)).sum()
    loss.backward()
    opt.step()
    changed = {k for k, a in net.alphas.items() if not torch.equal(a, before[k])}
    assert changed == {"normal_mid"}


def test_val_loss_reaches_every_level():
    torch.manual_seed(0)
    net = MultiLevelSupernet(C=4, num_classes=3, layers=5)
    F.cross_entropy(net(torch.randn(4, 3, 16, 16)), torch.tensor([0, 1, 2, 0])).backward()
    assert all(a.grad.abs().sum() > 0 for a in net.arch_parameters())


def test_multilevel_genotype_builds_level_by_level():
    torch.manual_seed(0)
    net = MultiLevelSupernet(C=4, num_classes=10, layers=5)
    with torch.no_grad():  # make the levels disagree: skip in low, sep_conv_5x5 in high
        net.alphas["normal_low"][:, 3] += 5.0
        net.alphas["normal_high"][:, 5] += 5.0
    g = net.genotype()
    assert all(op == "skip_connect" for op, _ in g.cells["normal_low"].edges)
    assert all(op == "sep_conv_5x5" for op, _ in g.cells["normal_high"].edges)
    model = create_model("darts_cifar", genotype=g, C=8, layers=8, num_classes=10, auxiliary=False)
    kinds = [type(op).__name__ for op in model.cells[0].ops]  # level low: skip -> Identity
    assert kinds == ["Identity"] * 8
    high = model.cells[7]
    assert all(type(op).__name__ == "SepConv" for op in high.ops)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
