"""random_ws (Li & Talwalkar 2019): uniform sampling over the DARTS cell space, a path supernet
whose architectures share weights, and the ranking by shared-weight validation accuracy."""
import json
from collections import Counter

import pytest
import torch
from scipy.stats import chi2, chisquare

from nascore.cli import main
from nascore.data.loader import TensorBatches, make_transform
from nascore.genotype import Genotype, load_genotype
from nascore.methods import METHODS
from nascore.spaces.darts import CellSpace
from nascore.strategies.weight_sharing import (UniformSampler, WeightSharingSearch, edge_frequencies,
                                               path_accuracy, rank_paths, sample_cell, sampled_ops)
from nascore.supernets import SUPERNETS

from conftest import set_yaml

SPACE = CellSpace()


def test_sampled_ops_and_inputs_are_uniform():
    """Chi-square at p = 0.001 over 6000 cells: every op (none excluded) equally often, and at every
    node every earlier state equally often as an input; no node takes one input twice."""
    g = torch.Generator().manual_seed(0)
    cells = [sample_cell(SPACE, g) for _ in range(6000)]
    ops = Counter(op for c in cells for op, _ in c.edges)
    assert set(ops) == set(sampled_ops(SPACE)) and "none" not in ops
    stat, p = chisquare([ops[o] for o in sampled_ops(SPACE)])
    assert p > 1e-3, (stat, ops)
    for j in range(SPACE.steps):
        srcs = Counter(src for c in cells for src in (s for _, s in c.nodes[j]))
        assert sorted(srcs) == list(range(j + 2))
        stat, p = chisquare([srcs[s] for s in range(j + 2)]) if j > 0 else (0.0, 1.0)
        assert p > 1e-3, (j, stat, srcs)
        assert all(c.nodes[j][0][1] != c.nodes[j][1][1] for c in cells)


def test_chi_square_check_rejects_a_biased_sampler():
    """The same statistic on a sampler that prefers one op fails (the test above can fail)."""
    biased = [sampled_ops(SPACE)[0]] * 1500 + sampled_ops(SPACE) * 650
    counts = Counter(biased)
    stat, _ = chisquare([counts[o] for o in sampled_ops(SPACE)])
    assert stat > chi2.ppf(1 - 1e-3, len(sampled_ops(SPACE)) - 1)


def test_edge_frequencies_match_the_sampling_probabilities():
    sampler = UniformSampler(SPACE, ["normal"])
    freq = edge_frequencies(sampler.sample(4000, torch.Generator().manual_seed(1)), SPACE, "normal")
    for e, (node, _src) in enumerate(SPACE.edges()):  # P(edge used) = 2 / (number of earlier states)
        assert abs(float(freq[e].sum()) - 2 / node) < 0.04
    assert float(freq[:, SPACE.primitives.index("none")].sum()) == 0.0


def _net(seed=0):
    torch.manual_seed(seed)
    return SUPERNETS["paths"](4, 10, 3, SPACE, 3, "reference")


def _batches(n=48, bs=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, 16, 16, generator=g), torch.randint(0, 10, (n,), generator=g)
    return TensorBatches(x, y, bs, make_transform("none", mean=(0, 0, 0), std=(1, 1, 1)), shuffle=False, seed=0)


def _path(seed):
    return UniformSampler(SPACE, ["normal", "reduce"]).sample(1, torch.Generator().manual_seed(seed))[0]


def test_every_path_reads_the_shared_weights():
    """A step on one path moves the weights of that path's ops, and another path that uses one of
    those ops computes a different output afterwards; ops on no path stay where they were."""
    net = _net()
    a, b = _path(1), _path(2)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    net.eval()
    net.path = b
    before_b = net(x).detach()
    snapshot = {n: p.detach().clone() for n, p in net.named_weight_parameters()}
    net.train()
    net.path = a
    torch.nn.functional.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        for p in net.weight_parameters():
            if p.grad is not None:
                p -= 0.5 * p.grad
    moved = {n for n, p in net.named_weight_parameters() if not torch.equal(p, snapshot[n])}
    untouched = [n for n in snapshot if "_ops." in n and n not in moved]
    assert moved and untouched  # the step moved a's ops and left ops off the path alone
    net.eval()
    net.path = b
    assert not torch.allclose(net(x), before_b)  # b reads weights a's step changed (stem, preprocess, shared ops)


def test_a_path_needs_the_reference_mixed_op_and_a_path():
    with pytest.raises(ValueError, match="mixed_op 'reference'"):
        SUPERNETS["paths"](4, 10, 3, SPACE, 3, "batched")
    with pytest.raises(RuntimeError, match="set `path`"):
        _net()(torch.randn(2, 3, 16, 16))


def test_path_accuracy_leaves_batch_norm_state_alone():
    net = _net()
    state = {k: v.clone() for k, v in net.state_dict().items()}
    path_accuracy(net, _path(3), _batches())
    assert all(torch.equal(v, state[k]) for k, v in net.state_dict().items())


def test_ranking_is_by_shared_weight_validation_accuracy():
    net, val = _net(), _batches(n=64)
    paths = [_path(s) for s in range(8)]
    rows = rank_paths(net, paths, val, rank_batches=1, finalists=3)
    screen = {p.canonical_hash(): path_accuracy(net, p, val, 1) for p in paths}
    full = {p.canonical_hash(): path_accuracy(net, p, val) for p in paths}
    assert [r["screen_acc"] for r in rows] != [] and len(rows) == len(screen)
    top3 = sorted(screen, key=lambda h: (-screen[h], h))[:3]
    assert {r["genotype_hash"] for r in rows[:3]} == set(top3)  # the finalists are the best screened
    assert [r["genotype_hash"] for r in rows[:3]] == sorted(top3, key=lambda h: (-full[h], h))
    assert all(r["val_acc"] == full[r["genotype_hash"]] for r in rows[:3])


def test_strategy_result_is_the_top_of_its_ranking():
    net, val = _net(), _batches(n=64)
    s = WeightSharingSearch(net, UniformSampler(SPACE, ["normal", "reduce"]), lr=0.05, lr_min=0.001, momentum=0.9,
                            weight_decay=3e-4, grad_clip=5.0, epochs=1, val_batches=val, candidates=6,
                            rank_batches=1, finalists=2, probes=2, seed=0)
    s.new_epoch(0)
    x, y = torch.randn(8, 3, 16, 16), torch.randint(0, 10, (8,))
    out = s.step((x, y))
    assert int(out["n"]) == 8 and torch.isfinite(out["loss"])
    g = s.genotype()
    assert g.canonical_hash() == s.ranking[0]["genotype_hash"]
    files, metrics = s.outputs()
    assert files["ranking.json"]["architectures"][0]["genotype_hash"] == g.canonical_hash()
    assert metrics["shared_val_err"] == round(100 * (1 - s.ranking[0]["val_acc"]), 4)


def test_search_writes_the_best_ranked_genotype(cifar_project):
    assert main(["--root", str(cifar_project), "search", "--method", "random_ws"]) == 0
    out = cifar_project / "runs" / "random_ws" / "search"
    ranking = json.loads((out / "ranking.json").read_text())
    genotype = load_genotype(out / "genotype.json")
    assert ranking["architectures"][0]["genotype_hash"] == genotype.canonical_hash()
    assert isinstance(genotype, Genotype) and set(genotype.cells) == {"normal", "reduce"}
    assert all(op != "none" for c in genotype.cells.values() for op, _ in c.edges)
    metrics = json.loads((cifar_project / "reports" / "metrics" / "random_ws-search.json").read_text())
    assert metrics["genotype_hash"] == genotype.canonical_hash() and "order" not in metrics
    assert metrics["ranked_architectures"] == len(ranking["architectures"]) <= 12
    hist = json.loads((out / "alpha_history.json").read_text())
    assert set(hist["epochs"][-1]["alphas"]) == {"normal", "reduce"}


def test_bad_ranking_params_are_rejected(project):
    set_yaml(project / "params" / "random_ws.yaml", "search.ranking.finalists", 2000)
    with pytest.raises(Exception, match=r"search.ranking.finalists: got 2000; at most ranking.candidates"):
        METHODS["random_ws"].from_project(project, "paper")
    set_yaml(project / "params" / "random_ws.yaml", "search.ranking.finalists", 10)
    set_yaml(project / "params" / "random_ws.yaml", "search.supernet.mixed_op", "batched")
    with pytest.raises(Exception, match=r"search.supernet.mixed_op: got 'batched'"):
        METHODS["random_ws"].from_project(project, "paper")
