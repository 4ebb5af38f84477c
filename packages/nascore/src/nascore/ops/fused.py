"""A fused mixed op in PyTorch: the same candidate modules (and so the same parameters,
buffers and state_dict) as the reference loop, computed in fewer, larger kernels.

- The input's ReLU is computed once for every conv candidate (the loop recomputes it per op).
- First-stage depthwise convs whose footprint fits a 5x5 window (sep 3x3, sep 5x5, dil 3x3)
  run as one depthwise conv: each kernel embedded in a 5x5 one (dil 3x3 on the even taps),
  groups = C, m outputs per input channel. Larger footprints (dil 5x5: 9x9) run on their own.
- The pointwise convs of all candidates run as one batched matmul.
- Affine-free BatchNorms of all candidates run as one batch_norm over the stacked channels,
  with the architecture weights folded in as its scale (w * BN(y) = BN_{gamma=w}(y)), so the
  weighted sum of an edge is one reduction; max and avg pool share one BatchNorm the same way.
  Where Triton runs (CUDA, or TRITON_INTERPRET=1), that normalise-scale-sum is one kernel that
  reads the stacked outputs once and recomputes the normalised values in backward
  (ops/kernels.py); elsewhere it is PyTorch's batch_norm followed by a sum.
- `none` is dropped instead of multiplied by zero.
- `fused_recompute` (the same op, registered apart) keeps fewer activations for backward: the
  ReLU -> depthwise -> pointwise stages of the conv candidates and the two pools are recomputed in
  backward from their (already kept) inputs instead of storing their m-times-wider outputs (and the
  max pool's int64 indices). About 0.6x the saved activations of `fused` for ~1/3 more conv-path
  forward work (bench/activation_memory.py); no BatchNorm is inside a recomputed part, so running
  statistics are updated once.
Running statistics are those of the candidates' own BN modules (read, then written back), so a
fused supernet trains, checkpoints and evaluates exactly like the reference.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nascore.ops.kernels import store_running_stats, triton_usable, weighted_bn_sum
from nascore.ops.mixed import MIXED_OPS, MixedOp
from nascore.ops.primitives import DilConv, SepConv

WINDOW = 5  # the shared depthwise window


def _footprint(conv: nn.Conv2d) -> int:
    return conv.dilation[0] * (conv.kernel_size[0] - 1) + 1


def _embed(conv: nn.Conv2d, w: torch.Tensor, size: int) -> torch.Tensor:
    """conv's weight w (C, 1, k, k) with dilation d placed, centred, in a (C, 1, size, size) kernel."""
    d, fp = conv.dilation[0], _footprint(conv)
    off = (size - fp) // 2
    out = w.new_zeros(w.shape[0], 1, size, size)
    out[:, :, off:off + fp:d, off:off + fp:d] = w
    return out


def _depthwise(x: torch.Tensor, convs: Sequence[nn.Conv2d], stride: int,
               weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Every depthwise conv of `convs` (with `weights`) applied to x; those that fit WINDOW share one call."""
    small = [i for i, c in enumerate(convs) if _footprint(c) <= WINDOW]
    out: list[torch.Tensor | None] = [None] * len(convs)
    if len(small) > 1:
        C, m = x.shape[1], len(small)
        # weight row c * m + j: input channel c, candidate j (groups = C)
        w = torch.stack([_embed(convs[i], weights[i], WINDOW) for i in small], dim=1)
        w = w.reshape(C * m, 1, WINDOW, WINDOW)
        y = F.conv2d(x, w, stride=stride, padding=WINDOW // 2, groups=C)
        y = y.unflatten(1, (C, m))
        for j, i in enumerate(small):
            out[i] = y[:, :, j]
    for i, c in enumerate(convs):
        if out[i] is None:
            out[i] = F.conv2d(x, weights[i], stride=stride, padding=c.padding, dilation=c.dilation, groups=c.groups)
    return out


def _pointwise(ys: Sequence[torch.Tensor], weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per candidate j, a 1x1 conv of ys[j] with weights[j]: one batched matmul. Returns (N, m, C, H, W)."""
    z = torch.stack(ys, dim=1)                                   # N, m, C, H, W
    w = torch.stack([wj.flatten(1) for wj in weights])          # m, C_out, C_in
    return torch.einsum("moc,nmchw->nmohw", w, z)


def _stacked_bn(z: torch.Tensor, bns: Sequence[nn.BatchNorm2d], training: bool,
                scale: torch.Tensor | None = None) -> torch.Tensor:
    """scale_j * BN_j(z[:, j]) for affine-free BNs, as one batch_norm over the stacked channels
    (scale = the architecture weights folded in as BN's gamma). Returns (N, m, C, H, W)."""
    n, m, C, H, W = z.shape
    mean = torch.cat([b.running_mean for b in bns])
    var = torch.cat([b.running_var for b in bns])
    bn0 = bns[0]
    y = F.batch_norm(z.reshape(n, m * C, H, W), mean, var,
                     weight=None if scale is None else scale.repeat_interleave(C), bias=None,
                     training=training or not bn0.track_running_stats, momentum=bn0.momentum, eps=bn0.eps)
    if training and bn0.track_running_stats:  # the candidates' own running statistics, as the reference
        store_running_stats(bns, mean, var)
    return y.view(n, m, C, H, W)


def _edge_sum(z: torch.Tensor, bns: Sequence[nn.BatchNorm2d], w: torch.Tensor, training: bool) -> torch.Tensor:
    """sum_j w_j * BN_j(z[:, j]): the Triton kernel where it runs, PyTorch's batch_norm elsewhere."""
    if triton_usable(z):
        return weighted_bn_sum(z, w, bns, training)
    return _stacked_bn(z, bns, training, w).sum(1)


@MIXED_OPS.register("fused")
class FusedMixedOp(MixedOp):
    """Drop-in for MixedOp (same modules and state_dict), computed as described above."""

    recompute = False  # fused_recompute: stateless stages recomputed in backward (see the module doc)

    def __init__(self, C: int, stride: int, primitives: Sequence[str]) -> None:
        super().__init__(C, stride, primitives)
        self.stride = stride
        self.convs, self.pools, self.other = [], [], []
        for k, (name, op) in enumerate(zip(self.primitives, self._ops)):
            if name == "none":
                continue
            if isinstance(op, (SepConv, DilConv)):
                self.convs.append(k)
            elif "pool" in name:
                self.pools.append(k)
            else:  # skip_connect (identity / FactorizedReduce) and any other op: applied as is
                self.other.append(k)
        # the (ReLU, depthwise, pointwise, BN) stages of the conv candidates, listed once for every forward
        self.first = [self._stage(k, 0) for k in self.convs]
        for k, first in zip(self.convs, self.first):
            if not (first[1].groups == first[1].in_channels and first[3].affine is False):
                raise ValueError(f"fused mixed op: {self.primitives[k]} is not an affine-free depthwise conv")
        # positions in self.convs of the one-stage (dil) and two-stage (sep) candidates, and their ops
        self.one = [j for j, k in enumerate(self.convs) if not isinstance(self._ops[k], SepConv)]
        self.two = [j for j, k in enumerate(self.convs) if isinstance(self._ops[k], SepConv)]
        self.one_ops = [self.convs[j] for j in self.one]
        self.two_ops = [self.convs[j] for j in self.two]
        self.second = [self._stage(k, 1) for k in self.two_ops]

    def _stage(self, k: int, i: int) -> DilConv:
        op = self._ops[k]
        return op[i] if isinstance(op, SepConv) else op

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        out = 0
        if self.convs:
            out = out + self._conv_sum(x, weights)
        if self.pools:
            z = self._stage_call(self._pooled, x)
            out = out + _edge_sum(z, [self._ops[k][1] for k in self.pools], weights[self.pools], self.training)
        for k in self.other:
            out = out + weights[k] * self._ops[k](x)
        if isinstance(out, int):  # only `none`: zeros of the output shape (alphas get their zero grads)
            return x[:, :, ::self.stride, ::self.stride].mul(0.0) * weights.sum()
        return out

    def _stage_call(self, fn, x: torch.Tensor, *weights: torch.Tensor) -> torch.Tensor:
        """fn(x, *weights), recomputed in backward (only its inputs kept) under fused_recompute while
        training. The conv weights are passed in, read at forward time: a recomputation must use the
        tensors of the forward (under functional_call, as the second-order step runs, they are not the
        module's own parameters by the time backward runs)."""
        if self.recompute and torch.is_grad_enabled():
            # no RNG in these stages: not saving the RNG state keeps the step CUDA-graph capturable
            return checkpoint(fn, x, *weights, use_reentrant=False, preserve_rng_state=False)
        return fn(x, *weights)

    def _pooled(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([self._ops[k][0](x) for k in self.pools], dim=1)

    def _first_stage(self, x: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        """ReLU (once for every conv candidate), the depthwise convs, the pointwise GEMM."""
        m = len(self.first)
        return _pointwise(_depthwise(F.relu(x), [s[1] for s in self.first], self.stride, w[:m]), w[m:])

    def _second_stage(self, zz: torch.Tensor, *w: torch.Tensor) -> torch.Tensor:
        m = len(self.second)
        return _pointwise(_depthwise_per_candidate(F.relu(zz), [s[1] for s in self.second], w[:m]), w[m:])

    def _conv_sum(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        first, second = self.first, self.second
        z = self._stage_call(self._first_stage, x, *[s[1].weight for s in first], *[s[2].weight for s in first])
        out = 0
        if self.one:
            out = _edge_sum(z[:, self.one], [first[j][3] for j in self.one], weights[self.one_ops], self.training)
        if self.two:
            # first-stage BN (no arch weight), then the second stage of every sep conv
            zz = _stacked_bn(z[:, self.two], [first[j][3] for j in self.two], self.training)
            z2 = self._stage_call(self._second_stage, zz, *[s[1].weight for s in second],
                                  *[s[2].weight for s in second])
            out = out + _edge_sum(z2, [s[3] for s in second], weights[self.two_ops], self.training)
        return out


def _depthwise_per_candidate(z: torch.Tensor, convs: Sequence[nn.Conv2d],
                             weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Candidate j's depthwise conv (weights[j]) on its own input z[:, j] (stride 1): one grouped conv
    over the stacked channels with every kernel embedded in the shared window."""
    n, m, C, H, W = z.shape
    if all(_footprint(c) <= WINDOW for c in convs):
        w = torch.cat([_embed(c, wj, WINDOW) for c, wj in zip(convs, weights)])  # (m * C, 1, 5, 5)
        y = F.conv2d(z.reshape(n, m * C, H, W), w, padding=WINDOW // 2, groups=m * C)
        return list(y.view(n, m, C, H, W).unbind(1))
    return [F.conv2d(z[:, j], wj, padding=c.padding, dilation=c.dilation, groups=c.groups)
            for j, (c, wj) in enumerate(zip(convs, weights))]


@MIXED_OPS.register("fused_recompute")
class RecomputeFusedMixedOp(FusedMixedOp):
    """The fused op keeping fewer activations: stateless stages recomputed in backward."""

    recompute = True


@MIXED_OPS.register("auto")
class AutoMixedOp(FusedMixedOp):
    """The fused computation on a GPU, the reference loop elsewhere (same modules either way)."""

    def forward(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return super().forward(x, weights) if x.is_cuda else MixedOp.forward(self, x, weights)
