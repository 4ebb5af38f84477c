"""The fused edge reduction sum_j w_j * BN_j(z_j): its hand-written backward against autograd
(gradcheck, float64), and the Triton kernels against the PyTorch path: under TRITON_INTERPRET=1
everywhere, compiled on a CUDA device where there is one."""
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from nascore.ops.kernels import WeightedBNSum, _stats, weighted_bn_sum


def _inputs(dtype=torch.float64, shape=(3, 2, 4, 5, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(*shape, generator=g, dtype=dtype) * 2 + 0.5
    w = torch.softmax(torch.randn(shape[1], generator=g, dtype=dtype), 0)
    return z, w


@pytest.mark.parametrize("training", [True, False])
def test_backward_formula_matches_autograd(training):
    z, w = _inputs()
    running = (torch.rand(8, dtype=torch.float64), torch.rand(8, dtype=torch.float64) + 0.5)

    def f(z, w):
        mean, _, rstd = _stats(z.detach(), 1e-5, training, *running)
        return WeightedBNSum.apply(z, w, mean, rstd, training, False)

    if training:  # the statistics depend on z: compare with autograd through F.batch_norm
        zz, ww = z.clone().requires_grad_(), w.clone().requires_grad_()
        ref = torch.nn.functional.batch_norm(zz.flatten(1, 2), None, None, training=True, eps=1e-5)
        ref = torch.einsum("m,nmchw->nchw", ww, ref.view_as(zz))
        out_z, out_w = z.clone().requires_grad_(), w.clone().requires_grad_()
        out = f(out_z, out_w)
        torch.testing.assert_close(out, ref)
        gout = torch.randn_like(out)
        torch.testing.assert_close(torch.autograd.grad(out, (out_z, out_w), gout),
                                   torch.autograd.grad(ref, (zz, ww), gout))
    else:
        assert torch.autograd.gradcheck(f, (z.clone().requires_grad_(), w.clone().requires_grad_()))


def test_running_statistics_follow_batchnorm():
    z, w = _inputs(torch.float32)
    bns = [nn.BatchNorm2d(4, affine=False) for _ in range(2)]
    ref = [nn.BatchNorm2d(4, affine=False) for _ in range(2)]
    for _ in range(3):
        weighted_bn_sum(z, w, bns, training=True, use_triton=False)
        for j, b in enumerate(ref):
            b(z[:, j])
    for b, r in zip(bns, ref):
        torch.testing.assert_close(b.running_mean, r.running_mean)
        torch.testing.assert_close(b.running_var, r.running_var)
        assert int(b.num_batches_tracked) == 3


INTERPRETED = pytest.mark.skipif(os.environ.get("TRITON_INTERPRET") != "1",
                                 reason="run by test_triton_under_interpreter")
CUDA = pytest.mark.skipif(not torch.cuda.is_available() or os.environ.get("TRITON_INTERPRET") == "1",
                          reason="needs a CUDA device: the compiled Triton kernels")
SHAPES = [(3, 2, 4, 5, 5), (2, 3, 8, 7, 9), (1, 1, 3, 4, 4)]
# the same checks in the interpreter (CPU tensors, every machine) and compiled (CUDA, a GPU session)
DEVICES = [pytest.param("cpu", marks=INTERPRETED, id="interpreted"), pytest.param("cuda", marks=CUDA, id="cuda")]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("shape", SHAPES)
def test_triton_kernels_match_pytorch(training, shape, device):
    z, w = (t.to(device) for t in _inputs(torch.float32, shape))
    bns = [nn.BatchNorm2d(shape[2], affine=False).to(device) for _ in range(shape[1])]
    for b in bns:
        b.running_mean.uniform_(-1, 1), b.running_var.uniform_(0.5, 2)
    mean, _, rstd = _stats(z, 1e-5, training, torch.cat([b.running_mean for b in bns]),
                           torch.cat([b.running_var for b in bns]))
    results = []
    for use_triton in (False, True):
        zz, ww = z.clone().requires_grad_(), w.clone().requires_grad_()
        out = WeightedBNSum.apply(zz, ww, mean, rstd, training, use_triton)
        out.backward(torch.linspace(-1, 1, out.numel(), device=device).view_as(out))
        results.append((out.detach(), zz.grad, ww.grad))
    for a, b in zip(*results):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_edge_with_triton_matches_the_reference_loop(stride, device, no_tf32):
    from nascore.ops import MIXED_OPS
    from nascore.spaces.darts import PRIMITIVES

    torch.manual_seed(0)
    ref = MIXED_OPS["reference"](4, stride, PRIMITIVES).to(device)
    fused = MIXED_OPS["fused"](4, stride, PRIMITIVES).to(device)
    fused.load_state_dict(ref.state_dict())
    x = torch.randn(2, 4, 8, 8, device=device)
    a = torch.randn(len(PRIMITIVES), device=device)
    results = []
    for op in (ref, fused):
        xi, ai = x.clone().requires_grad_(), a.clone().requires_grad_()
        y = op(xi, torch.softmax(ai, 0))
        y.backward(torch.linspace(-1, 1, y.numel(), device=device).view_as(y))
        results.append((y.detach(), xi.grad, ai.grad, *(p.grad for p in op.parameters())))
    for got, want in zip(results[1], results[0]):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)



def test_triton_under_interpreter():
    """CI has no GPU: run the Triton tests above in a process with TRITON_INTERPRET=1."""
    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("already interpreting")
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                        "triton_kernels_match_pytorch or fused_edge_with_triton"], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    assert "8 passed" in r.stdout
