"""The entropy term (seed 002, eq. 6-7): value, gradient vs autograd of the formula, and that
minimising it drives a toy alpha towards one-hot."""
import math

import pytest
import torch

from nascore.strategies.regularisers import architecture_entropy, entropy_regulariser
from nascore.supernets import MultiLevelSupernet


class Toy(torch.nn.Module):
    def __init__(self, alpha):
        super().__init__()
        self.alpha = torch.nn.Parameter(alpha)

    def alpha_probs(self):
        return {"g": torch.softmax(self.alpha, -1)}


def test_uniform_alpha_has_maximal_entropy_summed_over_edges_and_levels():
    net = MultiLevelSupernet(C=2, num_classes=2, layers=5)
    with torch.no_grad():
        for a in net.arch_parameters():
            a.zero_()
    groups = len(net.alphas)
    assert architecture_entropy(net).item() == pytest.approx(groups * 14 * math.log(8), rel=1e-6)


def test_gradient_matches_autograd_of_the_formula():
    a = torch.randn(3, 5, dtype=torch.float64)
    toy = Toy(a.clone())
    entropy_regulariser(2.0)(toy).backward()
    ref = a.clone().requires_grad_(True)
    p = torch.softmax(ref, -1)
    (2.0 * -(p * torch.log(p)).sum()).backward()
    torch.testing.assert_close(toy.alpha.grad, ref.grad)
    # analytic form: dH/da_k = -p_k (ln p_k + H_edge)
    pk = torch.softmax(a, -1)
    h = -(pk * pk.log()).sum(-1, keepdim=True)
    torch.testing.assert_close(toy.alpha.grad, 2.0 * -pk * (pk.log() + h))


def test_minimising_entropy_drives_alpha_to_one_hot():
    torch.manual_seed(0)
    toy = Toy(0.1 * torch.randn(4, 8))
    opt = torch.optim.Adam(toy.parameters(), lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        architecture_entropy(toy).backward()
        opt.step()
    p = toy.alpha_probs()["g"]
    assert (p.max(-1).values > 0.99).all()
    assert architecture_entropy(toy).item() < 0.1
