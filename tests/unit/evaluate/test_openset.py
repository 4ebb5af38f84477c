"""Center loss, Fd, AUROC and OSCR against values computed by hand on small examples."""
import math

import pytest
import torch

from nascore.evaluate.openset import auroc, center_distance, feature_distribution_score, max_softmax, oscr
from nascore.train.center_loss import CenterLoss


def test_center_loss_and_wen_update_by_hand():
    cl = CenterLoss(num_classes=2, dim=2, alpha=0.5)
    cl.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 3.0]])
    y = torch.tensor([0, 0, 1])
    # 1/2 * mean(|(1,0)|^2, |(0,2)|^2, |(0,2)|^2) = 1/2 * (1 + 4 + 4) / 3 = 1.5
    assert float(cl(x, y)) == pytest.approx(1.5)
    cl.update(x, y)
    # class 0: delta = ((0-1) + (0-0), (0-0) + (0-2)) / (1 + 2) = (-1/3, -2/3); c -= 0.5 delta
    # class 1: delta = ((1-1), (1-3)) / (1 + 1) = (0, -1)
    assert torch.allclose(cl.centers, torch.tensor([[1 / 6, 1 / 3], [1.0, 1.5]]))


def test_center_loss_gradient_is_x_minus_center_over_batch():
    cl = CenterLoss(2, 2, 0.5)
    cl.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[1.0, 0.0], [3.0, 3.0]], requires_grad=True)
    cl(x, torch.tensor([0, 1])).backward()
    assert torch.allclose(x.grad, torch.tensor([[0.5, 0.0], [1.0, 1.0]]))


def test_fd_by_hand_and_scale_invariant():
    centers = torch.tensor([[0.0, 0.0], [3.0, 4.0]])  # spacing 5
    f = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 6.0]])  # distances 1, 0, 2 -> mean 1
    y = torch.tensor([0, 0, 1])
    assert feature_distribution_score(f, y, centers) == pytest.approx(1 / (1 + 1 / 5))
    assert feature_distribution_score(10 * f, y, 10 * centers) == pytest.approx(1 / (1 + 1 / 5))
    assert feature_distribution_score(centers[y], y, centers) == pytest.approx(1.0)


def test_auroc_by_hand_with_ties():
    known = torch.tensor([0.9, 0.8, 0.4])
    unknown = torch.tensor([0.8, 0.3])
    # pairs (k > u): 0.9>0.8, 0.9>0.3, 0.8=0.8 (1/2), 0.8>0.3, 0.4<0.8, 0.4>0.3 -> 4.5 / 6
    assert auroc(known, unknown) == pytest.approx(4.5 / 6)
    assert auroc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auroc(torch.tensor([0.0]), torch.tensor([1.0])) == 0.0


def test_oscr_by_hand():
    # known scores 0.9 (correct), 0.7 (wrong), 0.5 (correct); unknown 0.8, 0.2
    ks, kc, us = torch.tensor([0.9, 0.7, 0.5]), torch.tensor([1, 0, 1]), torch.tensor([0.8, 0.2])
    # thresholds high->low: (FPR, CCR) = (0,1/3) (1/2,1/3) (1/2,1/3) (1/2,2/3) (1,2/3)
    # area: trapezoids from (0,0): 0 + 1/2*(1/3+1/3)/2... = 0.5*1/3 + 0.5*2/3 = 0.5
    assert oscr(ks, kc, us) == pytest.approx(0.5)
    # perfect separation and all correct: 1; the curve ends at the closed-set accuracy
    assert oscr(torch.tensor([2.0, 3.0]), torch.tensor([1, 1]), torch.tensor([0.0, 1.0])) == pytest.approx(1.0)
    assert oscr(ks, torch.tensor([1, 0, 0]), torch.tensor([0.0])) == pytest.approx(1 / 3)


def test_scores_rank_known_above_unknown():
    centers = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    feats = torch.tensor([[0.1, 0.0], [5.0, 5.0]])
    d = center_distance(None, feats, centers)
    assert d[0] > d[1] and math.isclose(float(d[0]), -0.1, rel_tol=1e-5)
    p = max_softmax(torch.tensor([[5.0, 0.0], [0.1, 0.0]]), None, None)
    assert p[0] > p[1]
