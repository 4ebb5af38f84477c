"""Per-edge op subsets (DartsSupernet.edge_ops) and the StacNAS stage-2 supernet: stage-2 edges
hold exactly the ops of the group their stage-1 representative won."""
import pytest
import torch
import torch.nn.functional as F

from nascore.spaces.darts import PRIMITIVES, CellSpace
from nascore.strategies.grouping import representatives, stage2_edge_ops
from nascore.supernets import DartsSupernet, GroupedSupernet

GROUPS = [["max_pool_3x3", "avg_pool_3x3"], ["skip_connect"], ["sep_conv_3x3", "sep_conv_5x5"],
          ["dil_conv_3x3", "dil_conv_5x5"]]


def _stage1_probs(winners: list[int], zero: bool) -> torch.Tensor:
    """softmax rows whose largest non-zero-op weight sits on the given group's representative;
    the zero op gets the largest weight of all, which must not matter."""
    prims = (["none"] if zero else []) + representatives(GROUPS)
    p = torch.full((14, len(prims)), 0.05)
    for e, g in enumerate(winners):
        p[e, prims.index(GROUPS[g][0])] = 0.3
        if zero:
            p[e, 0] = 0.5
    return p / p.sum(1, keepdim=True), prims


@pytest.mark.parametrize("zero", [True, False])
def test_stage2_edges_hold_exactly_the_winning_groups_ops(zero):
    gen = torch.Generator().manual_seed(0)
    winners = {k: torch.randint(0, 4, (14,), generator=gen).tolist() for k in ("normal", "reduce")}
    probs, prims = {}, None
    for k, w in winners.items():
        probs[k], prims = _stage1_probs(w, zero)
    edge_ops, active = stage2_edge_ops(probs, prims, GROUPS, zero)
    assert active == winners
    space = CellSpace(primitives=PRIMITIVES if zero else tuple(op for op in PRIMITIVES if op != "none"))
    model = GroupedSupernet(4, 10, 3, space, edge_ops=edge_ops)
    for cell, key in zip(model.cells, model.cell_keys):
        for e, edge in enumerate(cell.edges):
            expected = (["none"] if zero else []) + GROUPS[winners[key][e]]
            assert edge.primitives == expected
            assert len(edge._ops) == len(expected)
    # ops an edge does not hold weigh exactly 0 and get no gradient
    out = model(torch.randn(2, 3, 8, 8))
    F.cross_entropy(out, torch.tensor([1, 2])).backward()
    for key, p in model.alpha_probs().items():
        held = torch.tensor([[op in ops for op in space.primitives] for ops in edge_ops[key]])
        assert torch.all(p[~held] == 0) and torch.allclose(p.sum(1), torch.ones(14))
        assert torch.all(model.alphas[key].grad[~held] == 0)
        assert model.alphas[key].grad[held].abs().sum() > 0


def test_subset_edges_compute_the_same_as_a_full_edge_restricted_by_alpha():
    """An edge holding ops S equals a full edge whose other ops weigh 0 (same weights)."""
    torch.manual_seed(0)
    ops = [["skip_connect", "sep_conv_3x3"]] * 14
    sub = DartsSupernet(4, 10, 3, edge_ops={"normal": ops, "reduce": ops})
    full = DartsSupernet(4, 10, 3)
    # copy weights op by op: the subset edge's k-th op is the full edge's op of the same name
    fstate = full.state_dict()
    for name, t in sub.state_dict().items():
        if "._ops." in name:
            head, tail = name.split("._ops.")
            k, rest = tail.split(".", 1)
            op = ops[0][int(k)]
            name_full = f"{head}._ops.{PRIMITIVES.index(op)}.{rest}"
            fstate[name_full] = t
        elif name in fstate:
            fstate[name] = t
    full.load_state_dict(fstate)
    with torch.no_grad():
        for key in ("normal", "reduce"):
            full.alphas[key].fill_(-1e9)
            for op in ops[0]:
                full.alphas[key][:, PRIMITIVES.index(op)] = sub.alphas[key][:, PRIMITIVES.index(op)]
    x = torch.randn(2, 3, 8, 8)
    sub.eval(), full.eval()
    torch.testing.assert_close(sub(x), full(x))


def test_without_zero_op_edges_rank_by_stage1_group_weight():
    """No `none`: a singleton group (skip) weighs 1 in stage 2 on every edge it holds; the
    stage-1 weight of the group decides instead, so weak skip edges are not kept."""
    space = CellSpace(primitives=tuple(op for op in PRIMITIVES if op != "none"))
    ops = [["skip_connect"] if e % 2 == 0 else ["sep_conv_3x3", "sep_conv_5x5"] for e in range(14)]
    prior = [0.1 if e % 2 == 0 else 0.6 for e in range(14)]
    model = GroupedSupernet(4, 10, 3, space, edge_ops={"normal": ops, "reduce": ops},
                            group_prior={"normal": prior, "reduce": prior})
    g = model.genotype()
    # even edges hold skip: nodes 2 and 3 have one sep edge each (so keep one skip), nodes 4 and 5
    # have two or three sep edges (keep no skip) ...
    for cell in g.cells.values():
        assert sum(op == "skip_connect" for op, _ in cell.edges) == 2
    # ... while ranking by stage-2 weight alone keeps skip wherever it is offered (2 per node but node 2)
    plain = DartsSupernet(4, 10, 3, space, edge_ops={"normal": ops, "reduce": ops}).genotype()
    assert sum(op == "skip_connect" for op, _ in plain.cells["normal"].edges) == 7


def test_bad_edge_ops_are_rejected_with_the_reason():
    with pytest.raises(ValueError, match=r"edge_ops\['normal'\]: 3 edges given, the cell has 14"):
        DartsSupernet(4, 10, 3, edge_ops={"normal": [["skip_connect"]] * 3})
    with pytest.raises(ValueError, match=r"need distinct ops from"):
        DartsSupernet(4, 10, 3, edge_ops={"normal": [["conv_9x9"]] * 14})
    with pytest.raises(ValueError, match=r"unknown alpha groups \['normal_low'\]"):
        DartsSupernet(4, 10, 3, edge_ops={"normal_low": [["skip_connect"]] * 14})


def test_edges_with_fewer_candidates_do_not_win_for_their_size():
    """{skip, none} starts at 0.5 per op, {sep3, sep5, none} at 0.33: edges rank by weight relative
    to uniform, so a skip edge below uniform (0.45 of 2) loses to a sep edge above it (0.4 of 3)."""
    space = CellSpace(primitives=PRIMITIVES)
    ops = [["none", "skip_connect"] if e % 2 == 0 else ["none", "sep_conv_3x3", "sep_conv_5x5"] for e in range(14)]
    model = GroupedSupernet(4, 10, 3, space, edge_ops={"normal": ops, "reduce": ops})
    with torch.no_grad():
        for a in model.alphas.values():
            a.zero_()
            for e in range(14):
                if e % 2 == 0:  # p(skip) = 0.45, p(none) = 0.55
                    a[e, PRIMITIVES.index("none")] = torch.log(torch.tensor(0.55 / 0.45))
                else:           # p(sep3) = 0.4, p(sep5) = p(none) = 0.3
                    a[e, PRIMITIVES.index("sep_conv_3x3")] = torch.log(torch.tensor(0.4 / 0.3))
    probs = model.alpha_probs()["normal"]
    assert probs[0, PRIMITIVES.index("skip_connect")] > probs[1, PRIMITIVES.index("sep_conv_3x3")]  # raw: skip ahead
    cell = model.genotype().cells["normal"]
    # nodes 2 and 3 have one sep edge each, so keep one skip each; nodes 4 and 5 keep only sep edges
    assert sum(op == "skip_connect" for op, _ in cell.edges) == 2
    plain = DartsSupernet(4, 10, 3, space, edge_ops={"normal": ops, "reduce": ops})
    plain.load_state_dict(model.state_dict(), strict=False)
    assert sum(op == "skip_connect" for op, _ in plain.genotype().cells["normal"].edges) == 7
