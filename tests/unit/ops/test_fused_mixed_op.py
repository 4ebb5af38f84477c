"""The fused mixed op against the reference loop: same outputs, same gradients (weights,
alphas, input), same BN running statistics, for random alphas, every op subset size, normal
and reduction edges, in training and eval mode."""
import pytest
import torch

from nascore.ops import MIXED_OPS
from nascore.spaces.darts import PRIMITIVES

SUBSETS = [PRIMITIVES, ("none",), ("skip_connect",), ("max_pool_3x3", "avg_pool_3x3"),
           ("sep_conv_3x3", "sep_conv_5x5"), ("dil_conv_3x3", "dil_conv_5x5"),
           ("none", "sep_conv_3x3", "dil_conv_3x3"), ("sep_conv_5x5",), ("dil_conv_5x5", "skip_connect"),
           ("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")]


FUSED = ["fused", "fused_recompute"]


def _pair(prims, stride, C=4, seed=0, impl="fused"):
    torch.manual_seed(seed)
    ref = MIXED_OPS["reference"](C, stride, prims).double()
    fused = MIXED_OPS[impl](C, stride, prims).double()
    fused.load_state_dict(ref.state_dict())
    return ref, fused


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("prims", SUBSETS, ids=lambda p: "+".join(p))
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_matches_reference_in_training(prims, stride, impl):
    ref, fused = _pair(prims, stride, impl=impl)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 8, 8, generator=g, dtype=torch.float64)
    alpha = torch.randn(len(prims), generator=g, dtype=torch.float64)
    outs, grads = [], []
    for op in (ref, fused):
        xi = x.clone().requires_grad_(True)
        a = alpha.clone().requires_grad_(True)
        y = op(xi, torch.softmax(a, 0))
        (y * torch.linspace(-1, 1, y.numel(), dtype=y.dtype).view_as(y)).sum().backward()
        outs.append(y.detach())
        grads.append((xi.grad, a.grad, {n: p.grad for n, p in op.named_parameters()}))
    torch.testing.assert_close(outs[1], outs[0])
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])
    for n, gr in grads[0][2].items():
        torch.testing.assert_close(grads[1][2][n], gr, msg=f"grad of {n}")
    for (n, b), (_, bf) in zip(ref.named_buffers(), fused.named_buffers()):
        torch.testing.assert_close(bf, b, msg=f"buffer {n}")


@pytest.mark.parametrize("impl", FUSED)
@pytest.mark.parametrize("stride", [1, 2])
def test_fused_matches_reference_in_eval(stride, impl):
    ref, fused = _pair(PRIMITIVES, stride, impl=impl)
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64)
    for op in (ref, fused):  # a few training steps move the running statistics, then evaluate
        for _ in range(3):
            op(x, torch.full((8,), 1 / 8, dtype=torch.float64))
        op.eval()
    w = torch.softmax(torch.randn(8, dtype=torch.float64), 0)
    torch.testing.assert_close(fused(x, w), ref(x, w))


@pytest.mark.parametrize("impl", ["fused", "fused_recompute", "auto"])
def test_supernet_with_fused_edges_matches_the_reference_supernet(impl):
    """Drop-in: same params draw, same logits, same alpha and weight gradients, both cell types."""
    from nascore.supernets import DartsSupernet

    nets = []
    for mixed in ("reference", impl):
        torch.manual_seed(0)
        nets.append(DartsSupernet(4, 10, 3, mixed_op=mixed).double())
    assert nets[0].state_dict().keys() == nets[1].state_dict().keys()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    y = torch.tensor([1, 7])
    for net in nets:
        torch.nn.functional.cross_entropy(net(x), y).backward()
    for (n, p), (_, q) in zip(nets[0].named_parameters(), nets[1].named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=f"grad of {n}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run in a GPU session)")
@pytest.mark.parametrize("impl", ["fused", "fused_recompute", "auto"])
def test_supernet_on_cuda_fused_matches_reference(impl, no_tf32):
    """On the GPU the fused path runs the compiled Triton reduction (auto picks fused there): float32
    logits and gradients match the reference loop; TF32 off so both sides do the same arithmetic."""
    from nascore.supernets import DartsSupernet

    nets = []
    for mixed in ("reference", impl):
        torch.manual_seed(0)
        nets.append(DartsSupernet(8, 10, 5, mixed_op=mixed).cuda())
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(16, 3, 16, 16, generator=g).cuda(), torch.randint(0, 10, (16,), generator=g).cuda()
    logits = []
    for net in nets:
        out = net(x)
        torch.nn.functional.cross_entropy(out, y).backward()
        logits.append(out.detach())
    torch.testing.assert_close(logits[1], logits[0], rtol=1e-4, atol=1e-4)
    for (n, p), (_, q) in zip(nets[0].named_parameters(), nets[1].named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-3, atol=1e-4, msg=f"grad of {n}")
    for (n, b), (_, c) in zip(nets[0].named_buffers(), nets[1].named_buffers()):
        torch.testing.assert_close(c, b, rtol=1e-4, atol=1e-5, msg=f"buffer {n}")
