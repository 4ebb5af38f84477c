"""The batched cell: a DARTS search cell computed by source state, not edge by edge.

Every state of a cell (the two inputs and each intermediate node) feeds several later nodes.
The reference loop runs each (edge, candidate) pair on its own, some 45 small kernels per
edge; here all edges leaving one state are computed together (the two input states together
too, when their edges hold the same candidates), about 25 larger kernels per state:

- one ReLU of the state, shared by every conv candidate and FactorizedReduce;
- the first depthwise conv of every (target edge, sep/dil candidate) pair in two grouped convs,
  a dense 5x5 window for the sep convs and a dilation-2 5x5 window for the dil convs (3x3 kernels
  zero-padded into the window), one output channel per (input channel, pair);
- a channel shuffle into pair-major order and one grouped 1x1 conv: every pointwise conv;
- the BatchNorm inside every sep conv as one batch_norm, then the second half of the sep convs
  (ReLU, depthwise, pointwise) batched the same way;
- max and avg pool each from one read of the state;
- every candidate's final affine-free BatchNorm as one batch_norm over the stacked outputs with
  the architecture weights folded in as its scale (w * BN(y) = BN_{gamma=w}(y)), then one sum
  into the target nodes; `skip_connect` is added as w * x (stride 2: FactorizedReduce, whose
  BatchNorm joins the stacked one); `none` is dropped.

Parameters, buffers and state_dict stay those of the per-edge candidate modules (the reference
MixedOp's), so checkpoints, derivation and evaluation do not depend on the implementation. The
candidates' BatchNorm running statistics are views into one flat buffer per cell, which the
stacked batch_norm updates in place; the modules' own buffers are always the truth (moved with
`.to()`: the flat buffer is rebuilt from them; swapped by `torch.func.functional_call`: a forward
works on copies and writes them back into the swapped tensors). The conv weights of every cell are
assembled from the candidate modules in a dozen ops per forward (WeightBank).

A candidate the batched path does not know (e.g. sep_conv_7x7, conv_7x1_1x7, an affine BN) runs
as its own module, weighted and added to its target: correct, just not batched.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from nascore.ops.mixed import MIXED_OPS, MixedOp
from nascore.ops.primitives import DilConv, FactorizedReduce, SepConv

WINDOW = 5  # the shared depthwise window: dense for sep convs, dilation 2 for dil convs
# kinds in the order their outputs are stacked (sep first: its pointwise outputs feed stage 2)
FINAL_KINDS = ("sep", "dil", "max", "avg", "fr")
# device types whose index_add sums repeated rows with atomics (not bitwise reproducible): under
# torch.use_deterministic_algorithms the sum into the nodes is a matmul there instead
ATOMIC_INDEX_ADD = {"cuda", "xpu", "mps"}
# recomputed stages hold no randomness: not saving the RNG state keeps them CUDA-graph capturable
NO_RNG = {"use_reentrant": False, "preserve_rng_state": False}


class _Cat(torch.autograd.Function):
    """torch.cat whose backward is one split (autograd's: one slice per input)."""

    @staticmethod
    def forward(ctx, dim: int, *tensors: torch.Tensor) -> torch.Tensor:
        ctx.dim, ctx.sizes = dim, [t.shape[dim] for t in tensors]
        return torch.cat(tensors, dim)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        return None, *grad.split(ctx.sizes, ctx.dim)


def _cat(tensors: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    return tensors[0] if len(tensors) == 1 else _Cat.apply(dim, *tensors)


class _IndexAdd(torch.autograd.Function):
    """acc.index_add(1, rows, values) keeping only `rows` for backward (autograd's index_add keeps
    the whole `values` tensor alive just to read its shape)."""

    @staticmethod
    def forward(ctx, acc: torch.Tensor, rows: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows)
        return acc.index_add(1, rows, values)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        (rows,) = ctx.saved_tensors
        return grad, None, grad.index_select(1, rows)


def _affine_free(bn: nn.Module) -> bool:
    return isinstance(bn, nn.BatchNorm2d) and not bn.affine and bn.track_running_stats


def _kind(op: nn.Module, stride: int) -> tuple[str, int]:
    """(kind, kernel) of a candidate module: the batched kinds, or ("other", 0)."""
    if isinstance(op, SepConv) and all(_affine_free(half[3]) for half in op):
        k, d = op[0][1].kernel_size[0], op[0][1].dilation[0]
        if d == 1 and k <= WINDOW and k % 2 and op[0][1].padding[0] == k // 2:
            return "sep", k
    if isinstance(op, DilConv) and _affine_free(op[3]):
        k, d = op[1].kernel_size[0], op[1].dilation[0]
        if d == 2 and k <= WINDOW and k % 2 and op[1].padding[0] == k - 1:
            return "dil", k
    if isinstance(op, nn.Sequential) and len(op) == 2 and _affine_free(op[1]):
        pool = op[0]
        if isinstance(pool, nn.MaxPool2d) and (pool.kernel_size, pool.padding, pool.dilation) == (3, 1, 1):
            return "max", 3
        if isinstance(pool, nn.AvgPool2d) and (pool.kernel_size, pool.padding) == (3, 1) and not pool.count_include_pad:
            return "avg", 3
    if isinstance(op, nn.Identity) and stride == 1:
        return "skip", 0
    if isinstance(op, FactorizedReduce) and _affine_free(op.bn):
        return "fr", 0
    return "other", 0


@dataclass
class _Entry:
    """One (candidate kind, target) pair of a group: its module and alpha column per source."""

    kind: str
    kernel: int
    target: int                 # index among the group's targets
    ops: list[nn.Module]        # per source
    cols: list[int]             # flat index into the cell's alpha-weight matrix, per source


@dataclass
class _Group:
    """Edges leaving `sources` (one state, or the two inputs batched as channels)."""

    sources: tuple[int, ...]
    first: int                  # the first target node
    n_targets: int
    stride: int
    entries: dict[str, list[_Entry]] = field(default_factory=dict)
    others: list[tuple[int, _Entry]] = field(default_factory=list)  # (source position, entry)

    def of(self, kind: str) -> list[_Entry]:
        return self.entries.get(kind, [])

    @property
    def final(self) -> list[_Entry]:
        """Entries whose outputs go through the stacked final BatchNorm, in stacking order."""
        return [e for k in FINAL_KINDS for e in self.of(k)]


class BatchedCell(nn.Module):
    """One search cell's preprocessing and edges, computed by source state (module doc).

    `recompute` (mixed_op: batched_recompute): the stateless stages before and after the sep convs'
    inner BatchNorm (ReLU, depthwise, shuffle, pointwise) are recomputed in backward from their inputs
    instead of keeping their outputs, about 0.7x the activations for ~1/3 more conv work.

    Holds no parameters and no persistent buffers: it reads the modules of `preprocess` and of
    `edges` (one mixed op per edge, `edge_list[i] = (node, source)`, each with `primitives` and
    `_ops`); its index tensors are non-persistent buffers, so state_dict is the reference's."""

    recompute = False

    def __init__(self, preprocess: Sequence[nn.Module], edge_list: Sequence[tuple[int, int]],
                 edges: Sequence[MixedOp], primitives: Sequence[str], C: int, reduction: bool,
                 multiplier: int) -> None:
        super().__init__()
        self.C, self.multiplier = C, multiplier
        self.n_nodes = max(node for node, _ in edge_list) + 1
        self.preprocess = tuple(preprocess)
        layouts = {}   # (node, source) -> (stride, candidates sorted by kind)
        for i, (node, src) in enumerate(edge_list):
            stride = 2 if reduction and src < 2 else 1
            items = [(*_kind(op, stride), op, i * len(primitives) + list(primitives).index(name))
                     for name, op in zip(edges[i].primitives, edges[i]._ops) if name != "none"]
            layouts[node, src] = (stride, sorted(items, key=lambda t: (t[0], t[1])))
        same_inputs = all(self._signature(layouts[n, 0]) == self._signature(layouts[n, 1])
                          for n in range(2, self.n_nodes))
        sources = sorted({src for _, src in edge_list})
        order = [(0, 1)] + [(s,) for s in sources if s > 1] if same_inputs else [(s,) for s in sources]
        self.groups = [self._plan_group(srcs, layouts) for srcs in order]
        self._plan_tensors()
        self._stats = None  # the flat running statistics, built from the modules on first use
        self.bank = WeightBank([self])  # used when the cell is called without a supernet's bank

    # -- structure (built once) ------------------------------------------------------------
    @staticmethod
    def _signature(layout) -> tuple:
        stride, items = layout
        return stride, tuple((kind, k) for kind, k, _, _ in items)

    def _plan_group(self, srcs: tuple[int, ...], layouts: dict) -> _Group:
        first = max(2, max(srcs) + 1)
        targets = list(range(first, self.n_nodes))
        g = _Group(srcs, first, len(targets), layouts[targets[0], srcs[0]][0])
        for t, node in enumerate(targets):
            for items in zip(*[layouts[node, s][1] for s in srcs]):  # one candidate, every source
                kind, k = items[0][0], items[0][1]
                if kind == "other":
                    g.others += [(p, _Entry(kind, k, t, [it[2]], [it[3]])) for p, it in enumerate(items)]
                else:
                    g.entries.setdefault(kind, []).append(_Entry(kind, k, t, [it[2] for it in items],
                                                                 [it[3] for it in items]))
        for kind in g.entries:  # kind-major, then kernel, then target: the stacking order
            g.entries[kind].sort(key=lambda e: (e.kernel, e.target))
        return g

    def _plan_tensors(self) -> None:
        """The row indices that assemble every group's conv weights from the candidate modules in a
        few ops per forward, the BatchNorms in flat-buffer order, and the alpha columns read."""
        C = self.C
        # the conv weights each group reads, as pieces of modules (WeightBank assembles them)
        self.dw_pieces: list[list[tuple[nn.Conv2d, int]]] = []  # (module, channel) rows
        self.pw_pieces: list[list[nn.Conv2d]] = []                # whole modules, stacked on dim 0
        self.fr_pieces: list[list[nn.Conv2d]] = []
        bns, cols = [], []
        self.bn_sizes = []
        self.pre_kinds = [_preprocess_kind(p) for p in self.preprocess]
        for p, kind in zip(self.preprocess, self.pre_kinds):
            if kind != "module":
                bns.append(p[2] if kind == "rcb" else p.bn)
                self.bn_sizes.append(C)
        self.n_pre_bn = len(bns)
        for g in self.groups:
            S, sep, dil = len(g.sources), g.of("sep"), g.of("dil")
            # depthwise, first stage: rows (source, channel, pair), the layout of a grouped conv
            # with one group per (source, channel) and one output per pair
            for entries in (sep, dil):
                if entries:
                    self.dw_pieces.append([(_stage(e.ops[s], 0)[1], c) for s in range(S) for c in range(C)
                                           for e in entries])
            if sep:  # depthwise, second stage: rows (pair, source, channel), one group per row
                self.dw_pieces.append([(_stage(e.ops[s], 1)[1], c) for e in sep for s in range(S)
                                       for c in range(C)])
            # pointwise: (pair, source) blocks of C rows: the first stage (sep, dil), then sep's second
            for stage, entries in ((0, sep + dil), (1, sep)):
                if entries:
                    self.pw_pieces.append([_stage(e.ops[s], stage)[2] for e in entries for s in range(S)])
            for half in ("conv_1", "conv_2"):  # FactorizedReduce: (source, pair) blocks of C/2 rows
                if g.of("fr"):
                    self.fr_pieces.append([getattr(e.ops[s], half) for s in range(S) for e in g.of("fr")])
            inner = [_stage(e.ops[s], 0)[3] for e in sep for s in range(S)]
            final = [_final_bn(e.ops[s]) for e in g.final for s in range(S)]
            bns += inner + final
            self.bn_sizes += [len(inner) * C, len(final) * C]
            cols.append([e.cols[s] for e in g.final for s in range(S) for _ in range(C)])
        for g in self.groups:  # the skip weights, after every group's BatchNorm scale
            cols.append([e.cols[s] for e in g.of("skip") for s in range(len(g.sources))])
        self.bn_mods = tuple(bns)
        self.alpha_sizes = [len(c) for c in cols]
        self.register_buffer("alpha_cols", torch.tensor([c for cs in cols for c in cs], dtype=torch.long),
                             persistent=False)
        n_inter = self.n_nodes - 2
        for i, g in enumerate(self.groups):  # the intermediate node (0-based) each output row adds to
            others = [[g.first - 2 + e.target] for _, e in g.others]
            for name, rows in (("final", [g.first - 2 + e.target for e in g.final for _ in g.sources]),
                               ("skip", [g.first - 2 + e.target for e in g.of("skip") for _ in g.sources]),
                               *((f"other{j}", r) for j, r in enumerate(others))):
                index = torch.tensor(rows, dtype=torch.long)
                self.register_buffer(f"{name}_rows_{i}", index, persistent=False)
                # the same as a 0/1 matrix: the deterministic sum where index_add uses atomics
                self.register_buffer(f"{name}_onehot_{i}", F.one_hot(index, n_inter).float(), persistent=False)
        if bns and any((b.eps, b.momentum) != (bns[0].eps, bns[0].momentum) for b in bns):
            raise ValueError("batched cell: the candidates' BatchNorms differ in eps or momentum")
        self.eps, self.momentum = (bns[0].eps, bns[0].momentum) if bns else (1e-5, 0.1)

    # -- running statistics: one flat buffer, the modules' buffers its views -----------------
    def _running_stats(self) -> tuple[list, torch.Tensor | None, Callable[[], None] | None]:
        """(running (mean, var) per BatchNorm call, the flat num_batches_tracked, a write-back or None).

        Normally the modules' buffers are views of the flat buffers and the stacked batch_norm updates
        them in place. When they are not: moved to another device or dtype (`.to()`), the flat buffers
        are rebuilt from the modules and the modules re-pointed at them; swapped for other tensors of
        the same kind (torch.func.functional_call, as the second-order step's virtual forward), this
        forward runs on copies and writes them back into the swapped tensors afterwards (`write_back`),
        leaving the module's own buffers and the flat ones as they were."""
        bns = self.bn_mods
        if not bns:
            return [None] * len(self.bn_sizes), None, None
        st = self._stats
        if st is not None and all(b.running_mean.data_ptr() == p and b.running_var.data_ptr() == q
                                  and b.num_batches_tracked.data_ptr() == r for b, p, q, r in st[2]):
            return st[0], st[1], None
        with torch.no_grad():
            mean = torch.cat([b.running_mean for b in bns])
            var = torch.cat([b.running_var for b in bns])
            nbt = torch.stack([b.num_batches_tracked for b in bns])
        calls = list(zip(mean.split(self.bn_sizes), var.split(self.bn_sizes)))
        if st is not None and (mean.device, mean.dtype) == (st[1].device, st[3]):  # swapped: work on copies

            def write_back() -> None:
                with torch.no_grad():
                    torch._foreach_copy_([b.running_mean for b in bns], mean.split(self.C))
                    torch._foreach_copy_([b.running_var for b in bns], var.split(self.C))
                    torch._foreach_copy_([b.num_batches_tracked for b in bns], nbt.unbind())
            return calls, nbt, write_back
        C = self.C
        for i, b in enumerate(bns):  # the modules' buffers become views of the flat ones
            b._buffers["running_mean"] = mean[i * C:(i + 1) * C]
            b._buffers["running_var"] = var[i * C:(i + 1) * C]
            b._buffers["num_batches_tracked"] = nbt[i]
        # only the first and last module are checked per forward (cheap); a rebuild covers all
        probe = [(b, b.running_mean.data_ptr(), b.running_var.data_ptr(), b.num_batches_tracked.data_ptr())
                 for b in (bns[0], bns[-1])]
        self._stats = (calls, nbt, probe, mean.dtype)
        return calls, nbt, None

    # -- forward -------------------------------------------------------------------------
    def forward(self, s0: torch.Tensor, s1: torch.Tensor, weights: torch.Tensor,
                conv_weights: tuple[list, list, list] | None = None) -> torch.Tensor:
        """The cell output from its two inputs and its alpha-weight matrix (edges x primitives,
        softmax applied): the concatenation of the last `multiplier` intermediate nodes.
        `conv_weights`: this cell's share of a WeightBank call over the whole supernet (one
        assembly for every cell); without it the cell assembles its own."""
        stats, nbt, write_back = self._running_stats()
        if self.training and nbt is not None:
            nbt.add_(1)
        if conv_weights is None:
            conv_weights = self.bank()[0]
        dw, pw, fr = (list(w) for w in conv_weights)
        picked = weights.reshape(-1)[self.alpha_cols].split(self.alpha_sizes)
        pre_stats = iter(stats[:self.n_pre_bn])
        states = [self._preprocess(p, kind, s, pre_stats) for p, kind, s in
                  zip(self.preprocess, self.pre_kinds, (s0, s1))]
        acc = None   # (N, intermediate nodes, C, H, W): the sums so far of every intermediate node
        for i, g in enumerate(self.groups):
            while len(states) <= max(g.sources):   # a source is read once all its edges are summed
                states.append(acc[:, len(states) - 2] if acc is not None else self._zeros(states, weights))
            x = _cat([states[s] for s in g.sources], 1)
            acc = self._group_forward(i, g, x, acc, states, weights, dw, pw, fr,
                                      stats[self.n_pre_bn + 2 * i: self.n_pre_bn + 2 * i + 2],
                                      picked[i], picked[len(self.groups) + i])
        n_inter = self.n_nodes - 2
        if acc is None:
            acc = self._zeros(states, weights).unsqueeze(1).expand(-1, n_inter, -1, -1, -1)
        if write_back is not None:
            write_back()
        return acc[:, n_inter - self.multiplier:].flatten(1, 2)

    def _zeros(self, states, weights: torch.Tensor) -> torch.Tensor:
        """A node no edge reaches (every edge into it holds only `none`)."""
        s, stride = states[0], self.groups[0].stride
        return s.new_zeros(s.shape[0], self.C, -(-s.shape[2] // stride), -(-s.shape[3] // stride)) * weights.sum()

    def _scatter(self, acc: torch.Tensor | None, name: str, values: torch.Tensor) -> torch.Tensor:
        """acc[:, rows[m]] += values[:, m] for every m (rows: the buffer `{name}_rows`), out of place
        (acc None: zeros)."""
        if acc is None:
            acc = values.new_zeros(values.shape[0], self.n_nodes - 2, *values.shape[2:])
        elif acc.dtype != values.dtype:  # bf16 autocast: every contribution in the accumulator's dtype
            values = values.to(acc.dtype)
        if torch.are_deterministic_algorithms_enabled() and values.device.type in ATOMIC_INDEX_ADD:
            # index_add accumulates repeated rows with atomics there: sum with a 0/1 matrix instead
            onehot = getattr(self, f"{name.replace('rows', 'onehot')}").to(values.dtype)
            return acc + torch.einsum("mt,nmchw->ntchw", onehot, values)
        return _IndexAdd.apply(acc, getattr(self, name), values)

    def _preprocess(self, module: nn.Module, kind: str, s: torch.Tensor, stats) -> torch.Tensor:
        if kind == "module":
            return module(s)
        mean, var = next(stats)
        r = F.threshold(s, 0.0, 0.0)
        if kind == "rcb":
            y = F.conv2d(r, module[1].weight)
        else:
            y = self._factorized_reduce(r, module.conv_1.weight, module.conv_2.weight, 1, 1)
        return torch.native_batch_norm(y, None, None, mean, var, self.training, self.momentum, self.eps)[0]

    def _group_forward(self, i: int, g: _Group, x: torch.Tensor, acc, states, weights, dw, pw, fr, stats,
                       scale, skip_w) -> torch.Tensor | None:
        """acc plus, for every edge leaving the group's sources and every candidate on it,
        w * op(x) added to the edge's target node."""
        S, C, stride, train = len(g.sources), self.C, g.stride, self.training
        sep, dil, final = g.of("sep"), g.of("dil"), []
        recompute = self.recompute and torch.is_grad_enabled()
        # threshold = relu, keeping its input for backward (x is kept by the pools anyway)
        r = F.threshold(x, 0.0, 0.0) if (sep or dil) and not recompute or g.of("fr") else None
        if sep or dil:
            weights_1 = [dw.pop(0) if sep else None, dw.pop(0) if dil else None, pw.pop(0)]
            first = partial(self._first_stage, S=S, stride=stride, relu=recompute)
            p = checkpoint(first, x, *weights_1, **NO_RNG) if recompute else first(r, *weights_1)
            n_sep = len(sep) * S * C
            p_sep, p_dil = p.split([n_sep, p.shape[1] - n_sep], 1) if sep and dil else (p, p)
            if sep:  # the sep convs' inner BatchNorm, then their second half
                u = torch.native_batch_norm(p_sep, None, None, *stats[0], train, self.momentum, self.eps)[0]
                second = partial(self._second_stage, pairs=len(sep) * S)
                w2 = (dw.pop(0), pw.pop(0))
                final.append(checkpoint(second, u, *w2, **NO_RNG) if recompute else second(u, *w2))
            if dil:
                final.append(p_dil)
        for kind, pool in (("max", F.max_pool2d), ("avg", F.avg_pool2d)):
            if g.of(kind):
                kw = {} if kind == "max" else {"count_include_pad": False}
                final.append(pool(x, 3, stride, 1, **kw).repeat(1, len(g.of(kind)), 1, 1))
        if g.of("fr"):
            final.append(self._factorized_reduce(r, fr.pop(0), fr.pop(0), S, len(g.of("fr"))))
        if final:  # every final BatchNorm at once, alphas as its scale, then into the target nodes
            y = torch.native_batch_norm(_cat(final, 1), scale, None, *stats[1], train, self.momentum, self.eps)[0]
            acc = self._scatter(acc, f"final_rows_{i}", y.view(y.shape[0], -1, C, *y.shape[2:]))
        if g.of("skip"):
            xs = x.view(x.shape[0], 1, S, C, *x.shape[2:]) if S > 1 else x.unsqueeze(1)
            ws = skip_w.view(1, -1, S, 1, 1, 1) if S > 1 else skip_w.view(1, -1, 1, 1, 1)
            skip = xs * ws
            acc = self._scatter(acc, f"skip_rows_{i}", skip.flatten(1, 2) if S > 1 else skip)
        for j, (pos, e) in enumerate(g.others):  # candidates the batched path does not cover: their own modules
            val = weights.reshape(-1)[e.cols[0]] * e.ops[0](states[g.sources[pos]])
            acc = self._scatter(acc, f"other{j}_rows_{i}", val.unsqueeze(1))
        return acc

    def _first_stage(self, src: torch.Tensor, w_sep: torch.Tensor | None, w_dil: torch.Tensor | None,
                     w_pw: torch.Tensor, *, S: int, stride: int, relu: bool) -> torch.Tensor:
        """The depthwise convs of every (edge, sep / dil candidate) pair, the shuffle into pair-major
        channels and the pointwise convs as one grouped conv (src: the ReLU'd state, or the state
        with relu=True)."""
        C = self.C
        r = F.threshold(src, 0.0, 0.0) if relu else src
        shuffled = []
        if w_sep is not None:
            y = F.conv2d(r, w_sep, stride=stride, padding=WINDOW // 2, groups=S * C)
            shuffled.append(torch.channel_shuffle(y, S * C))
        if w_dil is not None:
            y = F.conv2d(r, w_dil, stride=stride, padding=WINDOW - 1, dilation=2, groups=S * C)
            shuffled.append(torch.channel_shuffle(y, S * C))
        return F.conv2d(_cat(shuffled, 1), w_pw, groups=w_pw.shape[0] // C)

    def _second_stage(self, u: torch.Tensor, w_dw: torch.Tensor, w_pw: torch.Tensor, *, pairs: int) -> torch.Tensor:
        """The sep convs' second half after their inner BatchNorm: ReLU, depthwise, pointwise."""
        u = F.conv2d(F.relu(u), w_dw, padding=WINDOW // 2, groups=w_dw.shape[0])
        return F.conv2d(u, w_pw, groups=pairs)

    def _factorized_reduce(self, r: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, S: int, m: int) -> torch.Tensor:
        """m FactorizedReduce ops per source of r (ReLU applied) before their BatchNorm: two grouped
        stride-2 1x1 convs, one per offset, as (pair, source, channel) channels."""
        if r.shape[-1] % 2 or r.shape[-2] % 2:  # odd sizes: pad so both paths agree (as the module)
            r = F.pad(r, (0, r.shape[-1] % 2, 0, r.shape[-2] % 2))
        a = F.conv2d(r, w1, stride=2, groups=S)
        b = F.conv2d(r[:, :, 1:, 1:], w2, stride=2, groups=S)
        if S == 1 and m == 1:
            return _cat([a, b], 1)
        n, _, H, W = a.shape
        half = w1.shape[0] // (S * m)
        y = _cat([a.view(n, S, m, half, H, W), b.view(n, S, m, half, H, W)], 3)
        return y.transpose(1, 2).reshape(n, m * S * 2 * half, H, W)


def _stage(op: nn.Module, i: int) -> DilConv:
    """The i-th (ReLU, depthwise, pointwise, BN) stage of a sep conv; a dil conv is one stage."""
    return op[i] if isinstance(op, SepConv) else op


def _final_bn(op: nn.Module) -> nn.BatchNorm2d:
    if isinstance(op, SepConv):
        return op[1][3]
    if isinstance(op, DilConv):
        return op[3]
    return op.bn if isinstance(op, FactorizedReduce) else op[1]


def _preprocess_kind(module: nn.Module) -> str:
    """rcb: ReLU -> 1x1 conv -> affine-free BN; fr: FactorizedReduce; module: anything else."""
    if isinstance(module, FactorizedReduce) and _affine_free(module.bn):
        return "fr"
    if (isinstance(module, nn.Sequential) and len(module) == 3 and isinstance(module[0], nn.ReLU)
            and isinstance(module[1], nn.Conv2d) and module[1].kernel_size == (1, 1)
            and module[1].stride == (1, 1) and module[1].groups == 1 and module[1].bias is None
            and _affine_free(module[2])):
        return "rcb"
    return "module"


class WeightBank(nn.Module):
    """Assembles the conv weights of every group of `cells` from the candidate modules, in a
    dozen ops per forward for a whole supernet (instead of a stack per module): depthwise kernels
    concatenated by size (3x3 zero-padded into the 5x5 window), one row gather into every group's
    layout, one split; pointwise and FactorizedReduce weights concatenated per shape and split.
    Reads `module.weight` at call time, so under functional_call the substituted tensors flow."""

    def __init__(self, cells: Sequence[BatchedCell]) -> None:
        super().__init__()
        self.n_cells = len(cells)
        pieces = [(i, j, rows) for i, c in enumerate(cells) for j, rows in enumerate(c.dw_pieces)]
        sizes = sorted({m.kernel_size[0] for _, _, rows in pieces for m, _ in rows})
        self.dw_kernels = [(k, tuple(dict.fromkeys(m for _, _, rows in pieces for m, _ in rows
                                                   if m.kernel_size[0] == k))) for k in sizes]
        offset, start = 0, {}
        for _, mods in self.dw_kernels:
            for m in mods:
                start[m], offset = offset, offset + m.weight.shape[0]
        self.dw_owner = [(i, j) for i, j, _ in pieces]
        self.dw_sizes = [len(rows) for _, _, rows in pieces]
        self.register_buffer("dw_rows", torch.tensor([start[m] + c for _, _, rows in pieces for m, c in rows],
                                                     dtype=torch.long), persistent=False)
        self.pw = self._by_shape([(i, j, mods) for i, c in enumerate(cells) for j, mods in enumerate(c.pw_pieces)])
        self.fr = self._by_shape([(i, j, mods) for i, c in enumerate(cells) for j, mods in enumerate(c.fr_pieces)])
        self.n_pieces = [(len(c.dw_pieces), len(c.pw_pieces), len(c.fr_pieces)) for c in cells]

    @staticmethod
    def _by_shape(pieces) -> list[tuple[tuple[nn.Conv2d, ...], list[int], list[tuple[int, int]]]]:
        """Pieces of whole modules grouped by weight shape: (modules, split sizes, owners)."""
        classes: dict[tuple, tuple[list, list, list]] = {}
        for i, j, mods in pieces:
            mods_, sizes, owners = classes.setdefault(tuple(mods[0].weight.shape[1:]), ([], [], []))
            mods_ += mods
            sizes.append(sum(m.weight.shape[0] for m in mods))
            owners.append((i, j))
        return [(tuple(m), s, o) for m, s, o in classes.values()]

    def forward(self) -> list[tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]]:
        """Per cell: (depthwise, pointwise, FactorizedReduce) weights of its groups, in its order."""
        out = [tuple([None] * n for n in counts) for counts in self.n_pieces]
        if self.dw_kernels:
            bank = [_cat([m.weight for m in mods], 0) for _, mods in self.dw_kernels]
            bank = _cat([F.pad(b, [(WINDOW - k) // 2] * 4) if k < WINDOW else b
                         for b, (k, _) in zip(bank, self.dw_kernels)], 0)
            for (i, j), w in zip(self.dw_owner, bank[self.dw_rows].split(self.dw_sizes)):
                out[i][0][j] = w
        for slot, classes in ((1, self.pw), (2, self.fr)):
            for mods, sizes, owners in classes:
                for (i, j), w in zip(owners, _cat([m.weight for m in mods], 0).split(sizes)):
                    out[i][slot][j] = w
        return out


@MIXED_OPS.register("batched")
class BatchedMixedOp(MixedOp):
    """An edge of a batched cell: the reference candidate modules (same state_dict). The search
    cell computes all its edges at once (BatchedCell); called on its own, an edge is the loop."""

    cell = BatchedCell


class RecomputeBatchedCell(BatchedCell):
    recompute = True


@MIXED_OPS.register("batched_recompute")
class RecomputeBatchedMixedOp(BatchedMixedOp):
    """The batched cell keeping fewer activations (stateless stages recomputed in backward)."""

    cell = RecomputeBatchedCell
