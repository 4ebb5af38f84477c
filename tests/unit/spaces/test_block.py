"""The block-unit space of seed 000: grammar rules, structures, networks."""
import itertools

import pytest
import torch

from nascore.controllers import GrammarError, LSTMPolicy
from nascore.spaces.block import BlockArchitecture, BlockGrammar, BlockNet

OPS = ["conv3x3", "conv5x5", "sep_conv3x3", "sep_conv5x5", "max_pool3x3", "avg_pool3x3", "skip", "no_skip"]


def test_length_and_fig3_example():
    g = BlockGrammar(OPS, layers=4, blocks=2, shared=True)
    assert g.length == sum(2 + i for i in range(4))
    # Fig. 3a: 1 = sep5x5 (block input), 2 = skip (block input), 3 = conv5x5 reading 1 and 2, 4 = no skip
    names = ["sep_conv5x5", "yes",
             "skip", "no", "yes",
             "conv5x5", "yes", "yes", "no",
             "no_skip", "no", "no", "no", "no"]
    arch = g.architecture(g.encode(names))
    assert arch.blocks[0] == (("sep_conv5x5", (0,)), ("skip", (1,)), ("conv5x5", (0, 1)), ("no_skip", ()))
    assert arch.blocks[0] == arch.blocks[1]  # shared structure
    net = BlockNet(arch, 6, C=8, embedding=16, integration_kernel=3, integration_stride=2, widen=2)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 6)
    assert net.stages[0].loose == [2]  # only conv5x5 is read by nobody


@pytest.mark.parametrize("bad,where", [
    (["sep_conv5x5", "no"], "position 1"),                        # a layer must read something
    (["no_skip", "yes"], "position 1"),                           # no_skip reads nothing
    (["no_skip", "no", "conv3x3", "yes", "yes"], "position 3"),   # nobody reads a no_skip layer
])
def test_illegal_structures_are_rejected(bad, where):
    g = BlockGrammar(OPS, layers=2, blocks=1, shared=True)
    with pytest.raises(GrammarError, match=where):
        g.check([g.index(t) for t in bad])


def test_every_legal_string_builds_and_the_policy_only_samples_legal_ones():
    g = BlockGrammar(["conv3x3", "skip", "no_skip"], layers=3, blocks=2, shared=False)
    legal = 0
    for s in itertools.product(range(len(g.vocab)), repeat=g.length // 2):
        try:
            g.check(list(s) * 2)
        except GrammarError:
            continue
        legal += 1
        arch = g.architecture(list(s) * 2)
        BlockNet(arch, 3, C=4, embedding=4, integration_kernel=3, integration_stride=2, widen=1)(torch.randn(1, 3, 8, 8))
    assert legal > 0
    torch.manual_seed(0)
    roll = LSTMPolicy(g, hidden=8).sample(200, torch.Generator().manual_seed(0))
    for row in roll.tokens.tolist():
        g.check(row)
    arch = g.architecture(roll.tokens[0].tolist())
    assert BlockArchitecture.from_json(arch.to_json()) == arch
