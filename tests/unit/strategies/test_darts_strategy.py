"""Architecture gradients: non-zero in both orders; the second-order (unrolled) gradient agrees
with a central finite difference of L_val(w - xi * grad_w L_train(w, alpha), alpha)."""
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet


def _strategy(order, dtype=torch.float32, hvp_eps=0.01):
    torch.manual_seed(0)
    model = DartsSupernet(C=4, num_classes=3, layers=3).to(dtype)
    s = DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.0, weight_decay=0.0, grad_clip=5.0,
                             epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=0.0,
                             order=order, hvp_eps=hvp_eps)
    g = torch.Generator().manual_seed(1)
    batches = [(torch.randn(6, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 3, (6,), generator=g))
               for _ in range(2)]
    return model, s, batches


@pytest.mark.parametrize("order", [1, 2])
def test_alphas_get_nonzero_gradients_and_move(order):
    model, s, ((xt, yt), (xv, yv)) = _strategy(order)
    before = [a.detach().clone() for a in model.arch_parameters()]
    s.a_optim.zero_grad()
    if order == 1:
        s._arch_loss(xv, yv).backward()
    else:
        s._unrolled_backward(xt, yt, xv, yv)
    for a in model.arch_parameters():
        assert a.grad is not None and a.grad.abs().sum() > 0
    s.step(((xt, yt), (xv, yv)))
    assert all(not torch.equal(b, a) for b, a in zip(before, model.arch_parameters()))


def test_second_order_gradient_matches_finite_difference():
    # float64 and a small HVP radius: ReLU / max-pool kinks make the Hessian-vector finite
    # difference erratic when its radius crosses one (on this 6-image toy, radii >= 1e-4 do).
    model, s, ((xt, yt), (xv, yv)) = _strategy(2, torch.float64, hvp_eps=1e-6)
    s._unrolled_backward(xt, yt, xv, yv)
    analytic = {k: a.grad.detach().clone() for k, a in model.alphas.items()}
    xi = s.lr
    named = model.named_weight_parameters()

    def objective() -> float:
        loss = F.cross_entropy(model(xt), yt)
        grads = torch.autograd.grad(loss, [p for _, p in named])
        unrolled = {n: (p - xi * g).detach() for (n, p), g in zip(named, grads)}
        buffers = {n: b.clone() for n, b in model.named_buffers()}
        return F.cross_entropy(functional_call(model, {**unrolled, **buffers}, (xv,)), yv).item()

    h = 1e-5
    gen = torch.Generator().manual_seed(3)
    for key, alpha in model.alphas.items():
        for flat in torch.randperm(alpha.numel(), generator=gen)[:6].tolist():
            idx = divmod(flat, alpha.shape[1])
            with torch.no_grad():
                alpha[idx] += h
            up = objective()
            with torch.no_grad():
                alpha[idx] -= 2 * h
            down = objective()
            with torch.no_grad():
                alpha[idx] += h
            numeric = (up - down) / (2 * h)
            assert analytic[key][idx].item() == pytest.approx(numeric, rel=2e-3, abs=1e-7), (key, idx)


def test_second_order_differs_from_first_order():
    model, s, ((xt, yt), (xv, yv)) = _strategy(2, torch.float64)
    s._unrolled_backward(xt, yt, xv, yv)
    second = [a.grad.clone() for a in model.arch_parameters()]
    for a in model.arch_parameters():
        a.grad = None
    s._arch_loss(xv, yv).backward()
    first = [a.grad for a in model.arch_parameters()]
    assert any(not torch.allclose(f, g) for f, g in zip(first, second))


def _plain_first_order_step(model, s, batch):
    """Alg. 1 as the original code runs it: full backward passes, half of each discarded."""
    (xt, yt), (xv, yv) = batch
    s.a_optim.zero_grad(set_to_none=True)
    F.cross_entropy(model(xv), yv).backward()
    s.a_optim.step()
    s.w_optim.zero_grad(set_to_none=True)
    F.cross_entropy(model(xt), yt).backward()
    torch.nn.utils.clip_grad_norm_(model.weight_parameters(), s.grad_clip)
    s.w_optim.step()


@pytest.mark.parametrize("mixed_op", ["reference", "fused", "batched"])
def test_pruned_backward_step_equals_full_backward_step(mixed_op):
    def build():
        torch.manual_seed(0)
        model = DartsSupernet(C=4, num_classes=3, layers=3, mixed_op=mixed_op)
        s = DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                 epochs=1, arch_lr=3e-3, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3, order=1)
        return model, s

    g = torch.Generator().manual_seed(1)
    batches = [((torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g)),
                (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 3, (6,), generator=g))) for _ in range(3)]
    ours, s_ours = build()
    plain, s_plain = build()
    for b in batches:
        s_ours.step(b)
        _plain_first_order_step(plain, s_plain, b)
    for (name, p), q in zip(ours.state_dict().items(), plain.state_dict().values()):
        torch.testing.assert_close(p, q, rtol=1e-6, atol=1e-7, msg=name)


def test_each_backward_computes_only_what_its_optimiser_uses():
    model, s, (train, val) = _strategy(1)
    conv = next(p for n, p in model.named_weight_parameters() if p.dim() == 4)
    alpha = model.arch_parameters()[0]
    seen = {"conv": 0, "alpha": 0}
    conv.register_hook(lambda g: seen.__setitem__("conv", seen["conv"] + 1))
    alpha.register_hook(lambda g: seen.__setitem__("alpha", seen["alpha"] + 1))
    s.step((train, val))
    # one alpha gradient (alpha step) and one conv weight gradient (weight step), not two of each
    assert seen == {"conv": 1, "alpha": 1}


@pytest.mark.parametrize("mixed_op", ["fused", "fused_recompute", "batched"])
def test_second_order_gradient_is_the_same_with_fused_ops(mixed_op):
    """The unrolled step runs the supernet under functional_call with other weights; a fused op that
    recomputes in backward must recompute with those weights, not the module's own."""
    grads = {}
    for impl in ("reference", mixed_op):
        torch.manual_seed(0)
        model = DartsSupernet(C=4, num_classes=3, layers=3, mixed_op=impl).double()
        s = DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.0, weight_decay=0.0, grad_clip=5.0,
                                 epochs=1, arch_lr=3e-4, arch_betas=(0.5, 0.999), arch_weight_decay=0.0, order=2)
        g = torch.Generator().manual_seed(1)
        (xt, yt), (xv, yv) = [(torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
                               torch.randint(0, 3, (6,), generator=g)) for _ in range(2)]
        s._unrolled_backward(xt, yt, xv, yv)
        grads[impl] = [a.grad.clone() for a in model.arch_parameters()]
    for ref, got in zip(grads["reference"], grads[mixed_op]):
        torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("mixed_op,order,one_level,graphs", [
    ("reference", 1, False, False), ("fused", 1, False, False), ("fused", 2, False, False),
    ("reference", 1, True, False), ("batched", 1, False, False), ("batched", 2, False, False),
    ("batched", 1, True, True), ("batched", 1, False, True)])
def test_channels_last_search_makes_the_same_updates(mixed_op, order, one_level, graphs):
    """channels_last (the GPU fast path's layout) changes where the bytes lie, not the search: the
    supernet's conv weights and every input the supernet sees are NHWC, and the updates are those
    of the contiguous layout."""
    g = torch.Generator().manual_seed(1)
    pairs = [tuple((torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64),
                    torch.randint(0, 3, (6,), generator=g)) for _ in range(2)) for _ in range(2)]
    batches = [p[0] if one_level else p for p in pairs]
    states, layouts = {}, []
    for cl in (False, True):
        torch.manual_seed(0)
        model = DartsSupernet(C=4, num_classes=3, layers=3, mixed_op=mixed_op).double()
        s = DifferentiableSearch(model, lr=0.05, lr_min=0.05, momentum=0.9, weight_decay=3e-4, grad_clip=5.0,
                                 epochs=1, arch_lr=3e-3, arch_betas=(0.5, 0.999), arch_weight_decay=1e-3,
                                 order=order, one_level=one_level, channels_last=cl, cuda_graphs=graphs)
        if cl:
            model.register_forward_pre_hook(
                lambda _m, args: layouts.append(args[0].is_contiguous(memory_format=torch.channels_last)))
            # the weights where the layouts differ (depthwise and 1x1 kernels are both at once)
            convs = [p for p in model.weight_parameters() if p.dim() == 4 and p.shape[1] > 1 and p.shape[-1] > 1]
            assert convs and all(p.is_contiguous(memory_format=torch.channels_last)
                                 and not p.is_contiguous() for p in convs)
        for b in batches:
            s.step(b)
        states[cl] = model.state_dict()
    assert layouts and all(layouts)  # every supernet forward of the steps got an NHWC batch
    for name, p in states[False].items():
        torch.testing.assert_close(states[True][name], p, rtol=1e-9, atol=1e-11, msg=name)
