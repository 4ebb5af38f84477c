"""The LSTM policy over a token grammar, REINFORCE / PPO and the warm start."""
import itertools
import math

import pytest
import torch

from nascore.controllers import CONTROLLER_UPDATES, GrammarError, LSTMPolicy, TokenGrammar, warm_start
from nascore.spaces.chain import ChainGrammar


class ToyGrammar(TokenGrammar):
    """4 positions over {a, b, c}; position 2 may not repeat position 1 (a prefix rule)."""

    vocab = ("a", "b", "c")

    @property
    def length(self):
        return 4

    def legal(self, prefix):
        if len(prefix) == 2:
            return [i for i in range(3) if i != prefix[1]]
        return [0, 1, 2]


def all_strings(g):
    for s in itertools.product(range(len(g.vocab)), repeat=g.length):
        try:
            g.check(s)
        except GrammarError:
            continue
        yield list(s)


def exact_expected_reward(policy, g, reward):
    strings = list(all_strings(g))
    with torch.no_grad():
        p = policy.score(torch.tensor(strings)).log_prob.exp()
    return float(sum(pi * reward(s) for pi, s in zip(p, strings))), float(p.sum())


def test_log_prob_is_sum_of_token_log_probs():
    torch.manual_seed(0)
    g = ToyGrammar()
    policy = LSTMPolicy(g, hidden=16)
    roll = policy.sample(5, torch.Generator().manual_seed(1))
    again = policy.score(roll.tokens)
    assert torch.allclose(roll.log_prob, again.log_prob, atol=1e-6)
    # token by token by hand: the step's logits, masked, log-softmaxed, at the chosen token
    tokens = roll.tokens[0]
    by_hand = 0.0
    for t in range(g.length):
        prefix = tokens[:t]
        state = None
        prev = torch.tensor([policy.start])
        for s in range(t + 1):
            out, state = policy.lstm(policy._step_inputs(prev, s), state)
            prev = tokens[s:s + 1]
        logits = policy._logits(out[:, 0])[0]
        mask = torch.zeros(3, dtype=torch.bool)
        mask[list(g.legal(prefix.tolist()))] = True
        by_hand += float(torch.log_softmax(logits.masked_fill(~mask, -math.inf), -1)[tokens[t]].detach())
    assert math.isclose(float(roll.log_prob[0].detach()), by_hand, rel_tol=1e-5)


def test_probabilities_sum_to_one_over_legal_strings_and_illegal_are_impossible():
    torch.manual_seed(0)
    g = ToyGrammar()
    policy = LSTMPolicy(g, hidden=16)
    _, total = exact_expected_reward(policy, g, lambda s: 0.0)
    assert math.isclose(total, 1.0, rel_tol=1e-5)
    illegal = torch.tensor([[0, 1, 1, 2]])  # repeats position 1 at position 2
    assert float(policy.score(illegal).log_prob.detach()) == -math.inf
    samples = policy.sample(500, torch.Generator().manual_seed(0)).tokens
    assert (samples[:, 2] != samples[:, 1]).all()
    with pytest.raises(GrammarError, match="position 2"):
        g.check([0, 1, 1, 2])


@pytest.mark.parametrize("kind,kw", [("reinforce", {}), ("ppo", {"clip": 0.2, "epochs": 4})])
def test_updates_raise_expected_reward_on_a_toy_task(kind, kw):
    """Reward: matches with the target string 'c a b c'; the optimum is that string."""
    torch.manual_seed(0)
    g = ToyGrammar()
    target = [2, 0, 1, 2]
    reward = lambda s: sum(a == b for a, b in zip(s, target)) / 4  # noqa: E731
    policy = LSTMPolicy(g, hidden=16)
    upd = CONTROLLER_UPDATES[kind](policy, lr=0.02, baseline_decay=0.9, entropy_weight=1e-3, grad_clip=5.0, **kw)
    before, _ = exact_expected_reward(policy, g, reward)
    gen = torch.Generator().manual_seed(0)
    for _ in range(60):
        with torch.no_grad():
            roll = policy.sample(8, gen)
        rewards = torch.tensor([reward(s) for s in roll.tokens.tolist()])
        upd.update(roll.tokens, rewards, policy.score(roll.tokens).log_prob.detach())
    after, _ = exact_expected_reward(policy, g, reward)
    assert before < 0.45 and after > 0.8, (before, after)
    assert policy.greedy() == target


def test_warm_started_controller_most_likely_string_is_vgg11():
    torch.manual_seed(0)
    g = ChainGrammar(["conv", "act", "pool"] * 2 + ["conv", "act", "conv", "act", "pool"],
                     {"conv": ["conv1x1", "conv3x3", "sep_conv3x3", "sep_conv5x5", "zero"],
                      "pool": ["avg2x2", "avg3x3", "max3x3", "max5x5", "zero"],
                      "act": ["relu", "sigmoid", "zero"]}, [8, 16, 32, 64, 128, 256, 512])
    vgg = [["conv3x3", 64], ["relu"], ["max3x3"], ["conv3x3", 128], ["relu"], ["max3x3"],
           ["conv3x3", 256], ["relu"], ["conv3x3", 256], ["relu"], ["max3x3"]]
    ids = g.tokens_of(vgg)
    policy = LSTMPolicy(g, hidden=32)
    out = warm_start(policy, ids, target_prob=0.6, lr=0.01, max_steps=500)
    # p(VGG-11) >= 0.6 > 0.5: no other string can be as likely, and greedy decoding finds it
    assert out["prob"] >= 0.6
    assert policy.greedy() == ids
    # forced positions (counts after pool/act) carry probability 1
    roll = policy.score(torch.tensor([ids]))
    forced = [2 * i + 1 for i, kind in enumerate(g.slots) if kind != "conv"]
    assert torch.all(roll.token_log_probs[0, forced] == 0)
    assert torch.all(roll.token_log_probs[0, [1, 7]] < 0)  # conv counts are choices
