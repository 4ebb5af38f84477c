"""Operator grouping (seed 004): activated groups ignore the zero op; clustering merges ops whose
outputs are correlated; op correlations measured on a supernet are a correlation matrix."""
import torch

from nascore.spaces.darts import PRIMITIVES, CellSpace
from nascore.strategies.grouping import activated_groups, cluster_ops, op_correlation
from nascore.supernets import DartsSupernet

GROUPS = [["max_pool_3x3", "avg_pool_3x3"], ["skip_connect"], ["sep_conv_3x3", "sep_conv_5x5"]]


def test_activated_group_is_the_best_non_zero_op():
    prims = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]
    probs = torch.tensor([[0.7, 0.1, 0.15, 0.05],    # none largest: skip wins among the rest
                          [0.1, 0.5, 0.2, 0.2],
                          [0.2, 0.1, 0.1, 0.6]])
    assert activated_groups(probs, prims, GROUPS) == [1, 0, 2]


def test_clustering_merges_correlated_ops_and_leaves_none_alone():
    names = ["none", "a", "b", "c", "d"]
    corr = torch.tensor([[1.0, 0.0, 0.0, 0.0, 0.0],
                         [0.0, 1.0, 0.9, 0.1, 0.0],
                         [0.0, 0.9, 1.0, 0.2, 0.1],
                         [0.0, 0.1, 0.2, 1.0, 0.8],
                         [0.0, 0.0, 0.1, 0.8, 1.0]])
    assert cluster_ops(names, corr, threshold=0.5) == [["a", "b"], ["c", "d"]]
    assert cluster_ops(names, corr, threshold=0.05) == [["a"], ["b"], ["c"], ["d"]]
    assert cluster_ops(names, corr, threshold=2.0) == [["a", "b", "c", "d"]]


def test_op_correlation_is_a_correlation_matrix():
    torch.manual_seed(0)
    model = DartsSupernet(4, 10, 3, CellSpace(primitives=PRIMITIVES))
    corr = op_correlation(model, [(torch.randn(4, 3, 8, 8), None)], PRIMITIVES)
    n = len(PRIMITIVES)
    assert corr.shape == (n, n)
    torch.testing.assert_close(corr, corr.T)
    torch.testing.assert_close(corr.diagonal()[1:], torch.ones(n - 1))  # every real op: 1 with itself
    assert torch.all(corr[0] == 0)                                     # `none` outputs zeros
    assert torch.all(corr.abs() <= 1 + 1e-5)
    # the two pools read the same window; they agree more with each other than with a 5x5 dil conv
    mp, ap, dil = (PRIMITIVES.index(o) for o in ("max_pool_3x3", "avg_pool_3x3", "dil_conv_5x5"))
    assert corr[mp, ap] > corr[mp, dil]
