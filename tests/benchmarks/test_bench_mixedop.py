"""CPU benchmarks (pytest-benchmark): supernet step and mixed op at small sizes. Reported as
ratios by pytest-benchmark's comparison table; never asserted on time."""
import sys

import pytest
import torch

from conftest import REPO

from nascore.ops import MIXED_OPS
from nascore.perf import OpCounter
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


def _search(impl: str, layers: int, C: int, original_optimizers: bool = False) -> DifferentiableSearch:
    torch.manual_seed(0)
    s = DifferentiableSearch(DartsSupernet(C=C, num_classes=10, layers=layers, mixed_op=impl), lr=0.025,
                             lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, epochs=1, arch_lr=3e-4,
                             arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, order=1)
    if original_optimizers:  # as the original train_search.py builds them: torch's defaults
        s.w_optim = torch.optim.SGD(s.weights, 0.025, momentum=0.9, weight_decay=3e-4)
        s.a_optim = torch.optim.Adam(s.alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return s


STEP_VARIANTS = ["original", *[n for n in MIXED_OPS.names() if n != "auto"]]


@pytest.mark.parametrize("variant", STEP_VARIANTS)
def test_first_order_step_aten_ops(benchmark, variant):
    """A first-order search step of the issue's supernet (8 cells, C=16, 32x32), timed by
    pytest-benchmark; the ATen ops it dispatches (what predicts a launch-bound GPU step) go to
    extra_info["aten_ops_per_step"] (bench/op_count.py prints them as a table)."""
    s = _search("reference" if variant == "original" else variant, 8, 16, original_optimizers=variant == "original")
    batch = ((torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))),
             (torch.randn(4, 3, 32, 32), torch.randint(0, 10, (4,))))
    step = (lambda: original_darts_step(s, batch)) if variant == "original" else (lambda: s.step(batch))
    step()
    with OpCounter() as ops:
        step()
    benchmark.extra_info["aten_ops_per_step"] = ops.total
    benchmark.extra_info["host_syncs_per_step"] = ops.syncs
    benchmark.pedantic(step, rounds=3, iterations=1)
    assert ops.total > 1000


def test_batched_cell_dispatches_a_fraction_of_the_loops_ops():
    """The point of the batched cell, counted (not timed) on a small supernet: under the same
    step, at most a fifth of the reference loop's ATen ops (at the issue's sizes: ~1/7)."""
    counts = {}
    for impl in ("reference", "batched"):
        s = _search(impl, 5, 4)
        batch = ((torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))),
                 (torch.randn(2, 3, 8, 8), torch.randint(0, 10, (2,))))
        s.step(batch)
        with OpCounter() as ops:
            s.step(batch)
        counts[impl] = ops.total
    assert counts["batched"] * 5 < counts["reference"], counts
