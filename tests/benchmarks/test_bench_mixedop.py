"""CPU benchmarks (pytest-benchmark): supernet step and mixed op at small sizes. Reported as
ratios by pytest-benchmark's comparison table; never asserted on time."""
import sys

import pytest
import torch

from conftest import REPO

from nascore.ops import MIXED_OPS
from nascore.spaces import PRIMITIVES
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet

sys.path.insert(0, str(REPO / "bench"))
from _common import original_darts_step  # noqa: E402  (the GPU scripts' baseline step)


@pytest.mark.parametrize("impl", MIXED_OPS.names())
def test_mixed_op_forward_backward(benchmark, impl):
    torch.manual_seed(0)
    op = MIXED_OPS[impl](8, 1, PRIMITIVES)
    x = torch.randn(16, 8, 16, 16, requires_grad=True)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), 0).requires_grad_()

    def run():
        op(x, w).sum().backward()

    benchmark(run)
    assert w.grad is not None and x.grad.shape == x.shape


@pytest.mark.parametrize("impl", MIXED_OPS.names())
@pytest.mark.parametrize("order", [1, 2])
def test_supernet_search_step(benchmark, order, impl):
    torch.manual_seed(0)
    model = DartsSupernet(C=4, num_classes=10, layers=5, mixed_op=impl)
    s = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                             epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, order=order)
    batch = ((torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))),
             (torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))))
    out = benchmark(s.step, batch)
    assert torch.isfinite(out["loss"])


@pytest.mark.parametrize("step", ["original_full_backward", "ours_pruned_backward"])
def test_first_order_step_backward(benchmark, step):
    """The same reference supernet and batch; only which gradients each backward computes differs."""
    torch.manual_seed(0)
    model = DartsSupernet(C=8, num_classes=10, layers=5)
    s = DifferentiableSearch(model, lr=0.025, lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                             epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, order=1)
    batch = ((torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))),
             (torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))))
    run = s.step if step.startswith("ours") else lambda b: original_darts_step(s, b)
    out = benchmark(run, batch)
    assert torch.isfinite(out["loss"])
