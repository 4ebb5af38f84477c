"""The batched cell (mixed_op "batched") against the reference loop, in float64: the same cell
outputs, the same gradients of inputs, alphas and every weight, the same BatchNorm running
statistics and state_dict, for random alphas, normal and reduction cells, full and partial
candidate sets (StacNAS groups, per-edge subsets, ops the batched path does not cover), the
multi-level and grouped supernets, eval mode, moved / copied / functional_call'd modules."""
import copy
import random

import pytest
import torch
import torch.nn.functional as F

from nascore.ops import batched as batched_mod
from nascore.spaces import CellSpace
from nascore.strategies.darts import DifferentiableSearch
from nascore.supernets import DartsSupernet, GroupedSupernet, MultiLevelSupernet
from nascore.supernets.darts import SearchCell

REPRESENTATIVES = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")  # StacNAS stage 1


def _random_subsets(space: CellSpace, seed: int, allow_none_only: bool = True) -> list[list[str]]:
    rng = random.Random(seed)
    out = []
    for _ in range(space.num_edges):
        k = rng.randint(1, len(space.primitives))
        ops = rng.sample(space.primitives, k)
        if not allow_none_only and ops == ["none"]:
            ops = ["none", "skip_connect"]
        out.append(sorted(ops, key=space.primitives.index))
    return out


BATCHED = ["batched", "batched_recompute"]


def _cells(space, reduction, reduction_prev, edge_ops, C=4, C_prev=6, impl="batched"):
    torch.manual_seed(0)
    ref = SearchCell(space, C_prev, C_prev, C, reduction, reduction_prev, "reference", edge_ops).double()
    bat = SearchCell(space, C_prev, C_prev, C, reduction, reduction_prev, impl, edge_ops).double()
    bat.load_state_dict(ref.state_dict())
    return ref, bat


def _run(cell, s0, s1, alpha):
    s0, s1, a = (t.clone().requires_grad_(True) for t in (s0, s1, alpha))
    out = cell(s0, s1, torch.softmax(a, -1))
    probe = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
    params = [p for _, p in cell.named_parameters()]
    grads = torch.autograd.grad((out * probe).sum(), [s0, s1, a] + params, allow_unused=True)
    return out.detach(), grads


def _assert_cells_match(ref, bat, reduction_prev=False, seed=1, eval_too=True):
    g = torch.Generator().manual_seed(seed)
    size = 10 if reduction_prev else 5
    s0 = torch.randn(3, 6, size, size, generator=g, dtype=torch.float64)
    s1 = torch.randn(3, 6, 5, 5, generator=g, dtype=torch.float64)
    alpha = torch.randn(ref.space.num_edges, len(ref.space.primitives), generator=g, dtype=torch.float64)
    (out_r, grads_r), (out_b, grads_b) = _run(ref, s0, s1, alpha), _run(bat, s0, s1, alpha)
    torch.testing.assert_close(out_b, out_r)
    names = ["s0", "s1", "alpha"] + [n for n, _ in ref.named_parameters()]
    for n, gr, gb in zip(names, grads_r, grads_b):
        if gr is None or gb is None:  # unused on one side (an all-`none` cell): zero on the other
            assert all(t is None or not t.any() for t in (gr, gb)), n
        else:
            torch.testing.assert_close(gb, gr, msg=f"gradient of {n}")
    sr, sb = ref.state_dict(), bat.state_dict()
    assert list(sr) == list(sb)
    for k in sr:  # running statistics and num_batches_tracked moved the same way
        torch.testing.assert_close(sb[k], sr[k], msg=f"state {k}")
    if eval_too:
        ref.eval(), bat.eval()
        w = torch.softmax(alpha, -1)
        torch.testing.assert_close(bat(s0, s1, w), ref(s0, s1, w))


@pytest.mark.parametrize("impl", BATCHED)
@pytest.mark.parametrize("reduction,reduction_prev", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("ops", ["all", "representatives", "random0", "random1", "random2"])
def test_cell_matches_the_reference_loop(reduction, reduction_prev, ops, impl):
    space = CellSpace()
    edge_ops = {"all": None, "representatives": [list(REPRESENTATIVES)] * space.num_edges}.get(ops)
    if ops.startswith("random"):
        edge_ops = _random_subsets(space, int(ops[-1]))
    ref, bat = _cells(space, reduction, reduction_prev, edge_ops, impl=impl)
    _assert_cells_match(ref, bat, reduction_prev)


def test_ops_the_batched_path_does_not_cover_run_as_modules():
    """sep_conv_7x7 and conv_7x1_1x7 (no shared window) and a space of 3 steps: still the reference."""
    space = CellSpace(primitives=("none", "max_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_7x7",
                                  "conv_7x1_1x7", "dil_conv_5x5"), steps=3, multiplier=3)
    for reduction in (False, True):
        ref, bat = _cells(space, reduction, False, None)
        kinds = {e.kind for g in bat.batched.groups for _, e in g.others}
        assert kinds == {"other"} and len(bat.batched.groups[0].others) > 0
        _assert_cells_match(ref, bat)


def test_input_states_with_different_candidates_are_separate_groups():
    space = CellSpace()
    edge_ops = [["sep_conv_3x3", "skip_connect"] if src == 0 else ["max_pool_3x3", "dil_conv_5x5"]
                for _, src in space.edges()]
    ref, bat = _cells(space, False, False, edge_ops)
    assert [g.sources for g in bat.batched.groups] == [(0,), (1,), (2,), (3,), (4,)]
    _assert_cells_match(ref, bat)
    ref, bat = _cells(space, False, False, None)
    assert [g.sources for g in bat.batched.groups] == [(0, 1), (2,), (3,), (4,)]


def test_a_cell_whose_edges_hold_only_none():
    space = CellSpace()
    ref, bat = _cells(space, False, False, [["none"]] * space.num_edges)
    _assert_cells_match(ref, bat, eval_too=False)


def test_deterministic_sum_into_nodes(monkeypatch):
    """Where index_add uses atomics (CUDA), deterministic mode sums with a 0/1 matmul instead."""
    monkeypatch.setattr(batched_mod, "ATOMIC_INDEX_ADD", {"cpu"})
    calls = []
    monkeypatch.setattr(batched_mod, "_IndexAdd", type("NoIndexAdd", (), {"apply": staticmethod(
        lambda *a: calls.append(1))}))
    torch.use_deterministic_algorithms(True)
    try:
        ref, bat = _cells(CellSpace(), True, False, _random_subsets(CellSpace(), 3))
        _assert_cells_match(ref, bat)
    finally:
        torch.use_deterministic_algorithms(False)
    assert not calls


@pytest.mark.parametrize("cls,kw", [(DartsSupernet, {}), (MultiLevelSupernet, {}),
                                    (GroupedSupernet, {"edge_ops": {"normal": _random_subsets(CellSpace(), 4, False)},
                                                       "group_prior": {"normal": [0.5] * 14}})])
def test_supernets_match_the_reference(cls, kw):
    """Same parameter draw, logits, alpha and weight gradients, running statistics; one WeightBank."""
    nets = []
    for mixed in ("reference", "batched"):
        torch.manual_seed(0)
        nets.append(cls(4, 10, 5, mixed_op=mixed, **kw).double())
    ref, bat = nets
    assert bat.weight_bank is not None and ref.weight_bank is None
    assert list(ref.state_dict()) == list(bat.state_dict())
    x, y = torch.randn(2, 3, 8, 8, dtype=torch.float64), torch.tensor([1, 7])
    for net in nets:
        with torch.no_grad():
            for a in net.arch_parameters():
                a.copy_(torch.linspace(-2, 2, a.numel(), dtype=a.dtype).view_as(a).sin())
        F.cross_entropy(net(x), y).backward()
    for (n, p), (_, q) in zip(ref.named_parameters(), bat.named_parameters()):
        torch.testing.assert_close(q.grad, p.grad, msg=f"grad of {n}")
    for (n, b), (_, c) in zip(ref.state_dict().items(), bat.state_dict().items()):
        torch.testing.assert_close(c, b, msg=n)
    assert ref.genotype() == bat.genotype()


def _strategies(order, one_level=False, grad_clip=5.0, impl="batched"):
    out = []
    for mixed in ("reference", impl):
        torch.manual_seed(0)
        net = DartsSupernet(4, 10, 4, mixed_op=mixed).double()
        out.append(DifferentiableSearch(net, lr=0.05, lr_min=0.001, momentum=0.9, weight_decay=3e-4,
                                        grad_clip=grad_clip, epochs=2, arch_lr=0.01, arch_betas=(0.5, 0.999),
                                        arch_weight_decay=1e-3, order=order, one_level=one_level))
    return out


@pytest.mark.parametrize("impl", BATCHED)
@pytest.mark.parametrize("order,one_level", [(1, False), (2, False), (1, True)])
def test_search_steps_match_the_reference(order, one_level, impl):
    """Whole search steps (alpha and weight updates, second order through functional_call: a recomputed
    stage must use the forward's weights) from the same start give the same parameters, alphas and
    running statistics."""
    strategies = _strategies(order, one_level, grad_clip=0.5, impl=impl)
    g = torch.Generator().manual_seed(2)
    batches = [tuple((torch.randn(4, 3, 8, 8, generator=g, dtype=torch.float64),
                      torch.randint(0, 10, (4,), generator=g)) for _ in range(2)) for _ in range(3)]
    for b in batches:
        for s in strategies:
            s.step(b[0] if one_level else b)
    sr, sb = (s.model.state_dict() for s in strategies)
    for k in sr:
        torch.testing.assert_close(sb[k], sr[k], msg=k)


def test_running_statistics_are_views_of_one_buffer_and_survive_moves_and_copies():
    torch.manual_seed(0)
    net = DartsSupernet(4, 10, 3, mixed_op="batched")
    x = torch.randn(2, 3, 8, 8)
    net(x)
    cell = net.cells[0].batched
    flat = cell._stats[1]  # num_batches_tracked of every candidate BN of the cell
    assert all(b.num_batches_tracked.untyped_storage().data_ptr() == flat.untyped_storage().data_ptr()
               for b in cell.bn_mods)
    assert int(flat.min()) == int(flat.max()) == 1
    net = net.double()  # new tensors: the cell rebuilds its flat buffer from the modules
    net(x.double())
    assert all(int(b.num_batches_tracked) == 2 for b in cell.bn_mods)
    twin = copy.deepcopy(net)
    twin(x.double())
    assert all(int(b.num_batches_tracked) == 2 for b in cell.bn_mods)
    assert all(int(b.num_batches_tracked) == 3 for b in twin.cells[0].batched.bn_mods)
    ref = DartsSupernet(4, 10, 3).double()
    ref.load_state_dict(twin.state_dict())  # checkpoints are interchangeable with the reference
    net.load_state_dict(ref.state_dict())
    assert all(int(b.num_batches_tracked) == 3 for b in cell.bn_mods)


def test_functional_call_with_swapped_buffers_leaves_the_running_statistics_alone():
    torch.manual_seed(0)
    net = DartsSupernet(4, 10, 3, mixed_op="batched").double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    net(x)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = {n: p.detach() * 1.5 for n, p in net.named_parameters()}
    buffers = {n: b.clone() for n, b in net.named_buffers()}
    out = torch.func.functional_call(net, {**params, **buffers}, (x,))
    assert torch.isfinite(out).all()
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    # the swapped-in buffers were updated instead, as a reference supernet updates them
    ref = DartsSupernet(4, 10, 3).double()
    ref.load_state_dict(before)
    ref_buffers = {n: b.clone() for n, b in ref.named_buffers()}
    torch.func.functional_call(ref, {**params, **ref_buffers}, (x,))
    for n, b in ref_buffers.items():
        torch.testing.assert_close(buffers[n], b, msg=n)
    net(x)  # and the real forward updates the module buffers again
    assert all(int(b.num_batches_tracked) == 2 for b in net.cells[0].batched.bn_mods)

