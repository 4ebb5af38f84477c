"""One-level (StacNAS, seed 004 claims 6-7) vs bi-level (DARTS) updates: each architecture step
uses exactly the batch the mode says, and one-level moves weights and alphas in one step."""
import copy

import pytest
import torch
import torch.nn.functional as F

from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet


def _setup(one_level: bool):
    torch.manual_seed(0)
    model = DartsSupernet(C=4, num_classes=3, layers=3)
    s = DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.0, weight_decay=0.0, grad_clip=1e9,
                             epochs=1, arch_lr=3e-3, arch_betas=(0.5, 0.999), arch_weight_decay=0.0,
                             one_level=one_level)
    g = torch.Generator().manual_seed(1)
    train = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
    val = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))
    return model, s, train, val


def _record_arch_step(s):
    """The alpha gradients at the moment the architecture optimiser steps."""
    used, step = [], s.a_optim.step

    def spy(*args, **kwargs):
        used.extend(a.grad.clone() for a in s.model.arch_parameters())
        return step(*args, **kwargs)

    s.a_optim.step = spy
    return used


def _grads(model, batch):
    """d CE / d (alphas, weights) of an untouched copy of `model` on `batch`."""
    twin = copy.deepcopy(model)
    F.cross_entropy(twin(batch[0]), batch[1]).backward()
    return ([a.grad.clone() for a in twin.arch_parameters()],
            [p.grad.clone() if p.grad is not None else torch.zeros_like(p) for p in twin.weight_parameters()])


def test_one_level_takes_both_gradients_from_the_training_batch():
    model, s, train, val = _setup(one_level=True)
    alpha_grad, weight_grad = _grads(model, train)
    other, _ = _grads(model, val)
    before_w = [p.detach().clone() for p in model.weight_parameters()]
    used = _record_arch_step(s)
    s.step(train)
    for u, g, o in zip(used, alpha_grad, other):
        torch.testing.assert_close(u, g)
        assert not torch.allclose(u, o)
    # plain SGD (no momentum, no decay, no clipping): w' = w - lr * grad_train
    for p, w0, g in zip(model.weight_parameters(), before_w, weight_grad):
        torch.testing.assert_close(p.detach(), w0 - 0.05 * g)


def test_bi_level_takes_the_alpha_gradient_from_the_validation_batch():
    model, s, train, val = _setup(one_level=False)
    alpha_grad_val, _ = _grads(model, val)
    alpha_grad_train, _ = _grads(model, train)
    used = _record_arch_step(s)
    s.step((train, val))
    assert len(used) == 2
    for u, gv, gt in zip(used, alpha_grad_val, alpha_grad_train):
        torch.testing.assert_close(u, gv)
        assert not torch.allclose(u, gt)


def test_one_level_refuses_a_second_order_step():
    model = DartsSupernet(C=4, num_classes=3, layers=3)
    with pytest.raises(ValueError, match="one-level optimisation has no unrolled"):
        DifferentiableSearch(model, lr=0.1, lr_min=0.0, momentum=0.9, weight_decay=0.0, grad_clip=5.0, epochs=1,
                             arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=0.0, order=2, one_level=True)
