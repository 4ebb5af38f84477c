"""Triton kernels of the fused mixed op, with the same math in PyTorch where Triton cannot run.

`weighted_bn_sum(z, w, ...)`: for z of shape (N, m, C, H, W) (m candidates' pre-BN outputs of one
edge) and architecture weights w (m,), the edge output sum_j w_j * BN_j(z[:, j]) with affine-free
BatchNorms, as one read of z and one write of the output. Backward recomputes the normalised
values from z and the per-channel statistics instead of storing them (m x less activation
memory than BN-then-sum), and reduces the BN gradient terms per channel.

Triton runs on CUDA tensors, or on CPU tensors under TRITON_INTERPRET=1 (how CI tests it);
otherwise the PyTorch path runs. Kernels are built on first use, so the interpreter flag is read
then, not at import.
"""
from __future__ import annotations

import os

import torch

try:  # kernels reference `tl`; without Triton only the PyTorch path runs
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover
    triton = tl = None

BLOCK = 1024
_KERNELS: dict[bool, tuple] = {}


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def triton_usable(t: torch.Tensor) -> bool:
    return triton is not None and (t.is_cuda or _interpret())


def _fwd(z_ptr, mean_ptr, rstd_ptr, w_ptr, out_ptr, total, C, HW, M: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < total
    n = offs // (C * HW)
    rem = offs % (C * HW)
    c = rem // HW
    hw = rem % HW
    acc = tl.zeros([BLOCK_SIZE], dtype=tl.float32)
    for j in tl.static_range(M):
        z = tl.load(z_ptr + ((n * M + j) * C + c) * HW + hw, mask=mask, other=0.0).to(tl.float32)
        mu = tl.load(mean_ptr + j * C + c, mask=mask, other=0.0)
        rs = tl.load(rstd_ptr + j * C + c, mask=mask, other=0.0)
        w = tl.load(w_ptr + j)
        acc += w * (z - mu) * rs
    tl.store(out_ptr + offs, acc, mask=mask)


def _bwd(z_ptr, g_ptr, mean_ptr, rstd_ptr, w_ptr, sg_ptr, sgx_ptr, dz_ptr, total, C, HW, inv_count,
         M: tl.constexpr, TRAINING: tl.constexpr, BLOCK_SIZE: tl.constexpr):
    offs = tl.program_id(0) * BLOCK_SIZE + tl.arange(0, BLOCK_SIZE)
    mask = offs < total
    hw = offs % HW
    c = (offs // HW) % C
    j = (offs // (HW * C)) % M
    n = offs // (HW * C * M)
    z = tl.load(z_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + (n * C + c) * HW + hw, mask=mask, other=0.0).to(tl.float32)
    mu = tl.load(mean_ptr + j * C + c, mask=mask, other=0.0)
    rs = tl.load(rstd_ptr + j * C + c, mask=mask, other=0.0)
    w = tl.load(w_ptr + j, mask=mask, other=0.0)
    if TRAINING:
        sg = tl.load(sg_ptr + c, mask=mask, other=0.0)
        sgx = tl.load(sgx_ptr + j * C + c, mask=mask, other=0.0)
        xhat = (z - mu) * rs
        dz = w * rs * (g - sg * inv_count - xhat * sgx * inv_count)
    else:
        dz = w * rs * g
    tl.store(dz_ptr + offs, dz, mask=mask)


def _kernels():
    interp = _interpret()
    if interp not in _KERNELS:
        _KERNELS[interp] = (triton.jit(_fwd), triton.jit(_bwd))
    return _KERNELS[interp]


def _stats(z: torch.Tensor, eps: float, batch: bool, running_mean, running_var):
    """Per (candidate, channel) mean, biased variance and 1/std: of the batch, or the running ones."""
    m, C = z.shape[1], z.shape[2]
    acc = z if z.dtype == torch.float64 else z.float()
    if batch:
        var, mean = torch.var_mean(acc, dim=(0, 3, 4), correction=0)
    else:
        mean, var = running_mean.view(m, C).to(acc.dtype), running_var.view(m, C).to(acc.dtype)
    return mean, var, torch.rsqrt(var + eps)


class WeightedBNSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, w, mean, rstd, training: bool, use_triton: bool):
        n, m, C, H, W = z.shape
        z = z.contiguous()
        if use_triton:
            out = torch.empty(n, C, H, W, device=z.device, dtype=torch.float32)
            total = out.numel()
            fwd, _ = _kernels()
            fwd[(triton.cdiv(total, BLOCK),)](z, mean.contiguous(), rstd.contiguous(), w.float().contiguous(), out,
                                               total, C, H * W, M=m, BLOCK_SIZE=BLOCK)
            out = out.to(z.dtype)
        else:
            xhat = (z - mean[None, :, :, None, None].to(z.dtype)) * rstd[None, :, :, None, None].to(z.dtype)
            out = torch.einsum("m,nmchw->nchw", w.to(z.dtype), xhat)
        ctx.save_for_backward(z, w, mean, rstd)
        ctx.training, ctx.use_triton = training, use_triton
        return out

    @staticmethod
    def backward(ctx, g):
        z, w, mean, rstd = ctx.saved_tensors
        n, m, C, H, W = z.shape
        g = g.contiguous()
        count = n * H * W
        # per-channel reductions (PyTorch): sum of g, and sum of g * xhat_j without materialising xhat
        acc = torch.float64 if z.dtype == torch.float64 else torch.float32
        sg = g.to(acc).sum(dim=(0, 2, 3))                                         # C
        sgz = torch.einsum("nchw,nmchw->mc", g.to(acc), z.to(acc))                # m, C
        sgx = (sgz - mean * sg[None]) * rstd                                      # sum g * xhat_j
        dw = sgx.sum(1).to(w.dtype)
        if ctx.use_triton:
            dz = torch.empty(z.shape, device=z.device, dtype=torch.float32)
            total = dz.numel()
            _, bwd = _kernels()
            bwd[(triton.cdiv(total, BLOCK),)](z, g, mean.contiguous(), rstd.contiguous(), w.float().contiguous(),
                                               sg.contiguous(), sgx.contiguous(), dz, total, C, H * W, 1.0 / count,
                                               M=m, TRAINING=ctx.training, BLOCK_SIZE=BLOCK)
            dz = dz.to(z.dtype)
        else:
            mu, rs = mean[None, :, :, None, None].to(z.dtype), rstd[None, :, :, None, None].to(z.dtype)
            wj = w.to(z.dtype)[None, :, None, None, None]
            gj = g[:, None]
            if ctx.training:
                xhat = (z - mu) * rs
                dz = wj * rs * (gj - (sg / count).to(z.dtype)[None, None, :, None, None]
                                - xhat * (sgx / count).to(z.dtype)[None, :, :, None, None])
            else:
                dz = wj * rs * gj
        return dz, dw, None, None, None, None


def store_running_stats(bns, mean: torch.Tensor, var: torch.Tensor) -> None:
    """Write concatenated running statistics (candidate-major) back into each candidate's BN."""
    C = bns[0].num_features
    with torch.no_grad():
        for j, b in enumerate(bns):
            b.running_mean.copy_(mean[j * C:(j + 1) * C])
            b.running_var.copy_(var[j * C:(j + 1) * C])
            b.num_batches_tracked += 1


def weighted_bn_sum(z: torch.Tensor, w: torch.Tensor, bns, training: bool,
                    use_triton: bool | None = None) -> torch.Tensor:
    """sum_j w_j * BN_j(z[:, j]) for the affine-free BatchNorm modules `bns` (one per candidate),
    updating their running statistics in training as nn.BatchNorm2d does."""
    n, m, C, H, W = z.shape
    rm = torch.cat([b.running_mean for b in bns])
    rv = torch.cat([b.running_var for b in bns])
    bn0 = bns[0]
    batch_stats = training or not bn0.track_running_stats
    with torch.no_grad():
        mean, var, rstd = _stats(z.detach(), bn0.eps, batch_stats, rm, rv)
        if training and bn0.track_running_stats:  # as nn.BatchNorm2d: unbiased variance, momentum
            count = n * H * W
            unbiased = var * count / max(count - 1, 1)
            store_running_stats(bns, rm * (1 - bn0.momentum) + bn0.momentum * mean.flatten().to(rm.dtype),
                                rv * (1 - bn0.momentum) + bn0.momentum * unbiased.flatten().to(rv.dtype))
    use = triton_usable(z) if use_triton is None else use_triton
    return WeightedBNSum.apply(z, w, mean, rstd, batch_stats, use)
