"""ENAS (micro): the cell grammar, the controller's log-probabilities over it, children that share
the supernet's weights, REINFORCE on shared-weight rewards, resume, and the search end to end."""
import copy
import json
import math

import pytest
import torch

from nascore.cli import main
from nascore.config import ParamsError
from nascore.controllers import GrammarError, LSTMPolicy, Reinforce
from nascore.data.loader import TensorBatches, make_transform
from nascore.genotype import load_genotype
from nascore.methods import METHODS
from nascore.spaces.cell_grammar import CellGrammar
from nascore.spaces.darts import CellSpace
from nascore.strategies.enas import ControllerSampler, ENASSearch
from nascore.supernets import SUPERNETS

from conftest import set_yaml

ENAS_OPS = ("max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5")
SPACE = CellSpace(primitives=ENAS_OPS)
CELLS = ["normal", "reduce"]


def _grammar():
    return CellGrammar(SPACE, CELLS)


def test_grammar_legal_tokens_per_position():
    g = _grammar()
    assert g.length == 2 * 4 * SPACE.steps
    assert [g.vocab[i] for i in g.legal([])] == ["in0", "in1"]
    assert [g.vocab[i] for i in g.legal([0])] == list(ENAS_OPS)
    assert [g.vocab[i] for i in g.legal([0, 5])] == ["in1"]  # the node's second input differs from its first
    node3 = [0, 5, 1, 5] * 3  # nodes 0..2 of the first cell
    assert [g.vocab[i] for i in g.legal(node3)] == ["in0", "in1", "in2", "in3", "in4"]
    with pytest.raises(GrammarError, match="position 2"):
        g.check([0, 5, 0, 6] + [0] * (g.length - 4))


def test_every_sampled_sequence_is_a_genotype_and_back():
    torch.manual_seed(0)
    g = _grammar()
    policy = LSTMPolicy(g, hidden=16, tanh_constant=1.1)
    for tokens in policy.sample(50, torch.Generator().manual_seed(3)).tokens.tolist():
        genotype = g.to_genotype(tokens)
        assert set(genotype.cells) == set(CELLS)
        for cell in genotype.cells.values():
            assert all(op in ENAS_OPS for op, _ in cell.edges)
            assert all(a[1] != b[1] and a[1] < 2 + j and b[1] < 2 + j for j, (a, b) in enumerate(cell.nodes))
        assert g.from_genotype(genotype) == tokens


def test_controller_log_prob_is_the_sum_of_masked_token_log_probs():
    """As for vgg_rl: a sample's log-probability equals teacher-forced scoring, and equals the
    per-token masked log-softmax summed by hand; an illegal sequence has probability 0."""
    torch.manual_seed(0)
    g = _grammar()
    policy = LSTMPolicy(g, hidden=16, tanh_constant=1.1)
    roll = policy.sample(4, torch.Generator().manual_seed(1))
    assert torch.allclose(roll.log_prob, policy.score(roll.tokens).log_prob, atol=1e-5)
    tokens = roll.tokens[0]
    by_hand, state = 0.0, None
    prev = torch.tensor([policy.start])
    for t in range(g.length):
        out, state = policy.lstm(policy._step_inputs(prev, t), state)
        mask = torch.zeros(len(g.vocab), dtype=torch.bool)
        mask[list(g.legal(tokens[:t].tolist()))] = True
        logits = policy._logits(out[:, 0])[0].masked_fill(~mask, -math.inf)
        by_hand += float(torch.log_softmax(logits, -1)[tokens[t]].detach())
        prev = tokens[t:t + 1]
    assert math.isclose(float(roll.log_prob[0].detach()), by_hand, rel_tol=1e-5)
    illegal = tokens.clone()
    illegal[2] = illegal[0]  # the second input repeats the first
    assert float(policy.score(illegal[None]).log_prob.detach()) == -math.inf


def test_reinforce_raises_the_probability_of_rewarded_cells():
    """Reward = share of skip_connect among the sampled ops: REINFORCE makes the controller pick it more."""
    torch.manual_seed(0)
    g = _grammar()
    policy = LSTMPolicy(g, hidden=16)
    update = Reinforce(policy, lr=0.05, baseline_decay=0.9, entropy_weight=0.0, grad_clip=5.0)
    skip = g.vocab.index("skip_connect")

    def share(tokens):
        return (tokens == skip).float().sum(1) / (g.length / 2)

    before = float(share(policy.sample(400, torch.Generator().manual_seed(9)).tokens).mean())
    for i in range(60):
        tokens = policy.sample(16, torch.Generator().manual_seed(100 + i)).tokens
        update.update(tokens, share(tokens), None)
    after = float(share(policy.sample(400, torch.Generator().manual_seed(9)).tokens).mean())
    assert before < 0.3 and after > before + 0.2, (before, after)


def _batches(n, bs=8, seed=0, side=16):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(n, 3, side, side, generator=gen), torch.randint(0, 10, (n,), generator=gen)
    return TensorBatches(x, y, bs, make_transform("none", mean=(0, 0, 0), std=(1, 1, 1)), shuffle=False, seed=0)


def _search(seed=0):
    torch.manual_seed(seed)
    net = SUPERNETS["paths"](4, 10, 3, SPACE, 3, "reference")
    policy = LSTMPolicy(_grammar(), hidden=16, tanh_constant=1.1)
    update = Reinforce(policy, lr=0.01, baseline_decay=0.9, entropy_weight=1e-4, grad_clip=5.0)
    return ENASSearch(net, ControllerSampler(policy, _grammar()), update, controller_every=2, children=3, lr=0.05,
                      lr_min=0.001, momentum=0.9, weight_decay=3e-4, grad_clip=5.0, epochs=2,
                      val_batches=_batches(16), candidates=4, rank_batches=1, finalists=2, probes=2, seed=0)


def _pair(i):
    gen = torch.Generator().manual_seed(i)
    return ((torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)),
            (torch.randn(8, 3, 16, 16, generator=gen), torch.randint(0, 10, (8,), generator=gen)))


def test_a_step_on_one_child_changes_the_weights_another_child_reads():
    s = _search()
    s.new_epoch(0)
    snapshot = {n: p.detach().clone() for n, p in s.model.named_weight_parameters()}
    torch.manual_seed(5)
    s.step(_pair(0))
    trained = s.model.path
    changed = {n for n, p in s.model.named_weight_parameters() if not torch.equal(p, snapshot[n])}
    # another child: the trained one with a different op on its last edge
    other = s.sampler.grammar.from_genotype(trained)
    other[-1] = s.sampler.grammar.vocab.index(next(op for op in ENAS_OPS if s.sampler.grammar.vocab[other[-1]] != op))
    child = s.sampler.grammar.to_genotype(other)
    assert child.canonical_hash() != trained.canonical_hash()
    s.model.zero_grad(set_to_none=True)
    s.model.path = child
    s.model(torch.randn(2, 3, 16, 16)).sum().backward()
    reads = {n for n, p in s.model.named_weight_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    shared_ops = {n for n in changed & reads if "._ops." in n}
    assert shared_ops, "the other child reads none of the op weights the first child's step changed"


def test_controller_updates_on_validation_rewards_and_resume_is_exact():
    a = _search()
    a.new_epoch(0)
    policy0 = [p.detach().clone() for p in a.sampler.policy.parameters()]
    for i in range(2):
        torch.manual_seed(100 + i)
        a.step(_pair(i))
    assert a.last_controller and 0.0 <= a.last_controller["reward"] <= 1.0
    assert any(not torch.equal(p, q) for p, q in zip(a.sampler.policy.parameters(), policy0))
    state = copy.deepcopy(a.state_dict())  # a checkpoint: no tensor shared with the live run
    b = _search(seed=1)  # other initial weights and controller: everything comes from the state
    b.load_state_dict(state)
    b.new_epoch(0)
    for s in (a, b):
        for i in range(2, 4):
            torch.manual_seed(100 + i)
            s.step(_pair(i))
    for p, q in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        assert torch.equal(p, q)
    for p, q in zip(a.sampler.policy.parameters(), b.sampler.policy.parameters()):
        assert torch.equal(p, q)
    assert a.update.baseline == b.update.baseline


def test_search_end_to_end_writes_the_best_sampled_cell(cifar_project):
    assert main(["--root", str(cifar_project), "search", "--method", "enas"]) == 0
    out = cifar_project / "runs" / "enas" / "search"
    genotype = load_genotype(out / "genotype.json")
    ranking = json.loads((out / "ranking.json").read_text())
    assert ranking["architectures"][0]["genotype_hash"] == genotype.canonical_hash()
    assert all(op in ENAS_OPS for c in genotype.cells.values() for op, _ in c.edges)
    metrics = json.loads((cifar_project / "reports" / "metrics" / "enas-search.json").read_text())
    assert metrics["genotype_hash"] == genotype.canonical_hash()
    assert 0.0 <= metrics["controller_reward"] <= 1.0 and metrics["optimisation"].startswith("weight sharing; an LSTM")
    hist = json.loads((out / "alpha_history.json").read_text())
    assert len(hist["epochs"]) == 2 and set(hist["epochs"][0]["alphas"]) == {"normal", "reduce"}


def test_none_among_the_ops_is_rejected(project):
    set_yaml(project / "params" / "enas.yaml", "search.supernet.primitives", ["none", *ENAS_OPS])
    with pytest.raises(ParamsError, match="a controller never samples none"):
        METHODS["enas"].from_project(project, "paper")
