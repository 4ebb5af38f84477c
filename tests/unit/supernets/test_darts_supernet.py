"""The DARTS supernet: structure, alpha groups, derivation (top-2 edges, argmax without none)."""
import torch

from nascore.spaces import PRIMITIVES, CellSpace
from nascore.supernets import DartsSupernet, reduction_layers


def test_reductions_at_one_and_two_thirds_and_alpha_shapes():
    assert reduction_layers(8) == (2, 5) and reduction_layers(20) == (6, 13)
    net = DartsSupernet(C=4, num_classes=10, layers=8)
    assert [c.reduction for c in net.cells] == [i in (2, 5) for i in range(8)]
    assert set(net.alphas) == {"normal", "reduce"}
    assert net.alphas["normal"].shape == (14, 8)
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)
    n_arch = sum(p.numel() for p in net.arch_parameters())
    assert n_arch == 2 * 14 * 8
    assert sum(p.numel() for p in net.weight_parameters()) + n_arch == sum(p.numel() for p in net.parameters())


def test_derive_keeps_two_strongest_edges_and_never_none():
    space = CellSpace()
    w = torch.full((space.num_edges, len(PRIMITIVES)), 0.01)
    none, sep3, skip, dil5 = (PRIMITIVES.index(n) for n in ("none", "sep_conv_3x3", "skip_connect", "dil_conv_5x5"))
    w[:, none] = 0.9  # `none` dominates everywhere but must never be chosen
    # node 2 (edges 0,1): sep3 from 1 strongest, skip from 0
    w[1, sep3], w[0, skip] = 0.5, 0.3
    # node 5 (edges 9..13, inputs 0..4): strongest are input 4 (dil5) and input 2 (sep3)
    w[13, dil5], w[11, sep3], w[9, skip] = 0.6, 0.5, 0.1
    cell = space.derive(w)
    assert set(cell.nodes[0]) == {("sep_conv_3x3", 1), ("skip_connect", 0)}
    assert set(cell.nodes[3]) == {("dil_conv_5x5", 4), ("sep_conv_3x3", 2)}
    assert all(op != "none" for op, _ in cell.edges)
    assert cell.concat == (2, 3, 4, 5)
