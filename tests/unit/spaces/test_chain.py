"""The VGG chain space: grammar, child networks, parameter counts."""
import pytest
import torch

from nascore.controllers import GrammarError
from nascore.spaces.chain import ChainArchitecture, ChainGrammar, ChainNet

SLOTS = ["conv", "act", "pool", "conv", "act", "pool", "conv", "act", "conv", "act", "pool",
         "conv", "act", "conv", "act", "pool", "conv", "act", "conv", "act", "pool"]
ACTIONS = {"conv": ["conv1x1", "conv3x3", "sep_conv3x3", "sep_conv5x5", "zero"],
           "pool": ["avg2x2", "avg3x3", "max3x3", "max5x5", "zero"], "act": ["relu", "sigmoid", "zero"]}
COUNTS = [8, 16, 32, 64, 128, 256, 512]
VGG11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def vgg11_layers(pool="max3x3"):
    layers = []
    for v in VGG11:
        layers += [[pool]] if v == "M" else [["conv3x3", v], ["relu"]]
    return layers


def test_vgg11_parameter_count_matches_the_formula():
    g = ChainGrammar(SLOTS, ACTIONS, COUNTS)
    arch = ChainArchitecture.from_slots(g.layers(g.tokens_of(vgg11_layers())))
    net = ChainNet(arch, num_classes=10)
    convs = [v for v in VGG11 if v != "M"]
    expected, c_in = 0, 3
    for c in convs:  # 3x3 conv without bias + BN (weight, bias)
        expected += 9 * c_in * c + 2 * c
        c_in = c
    expected += 512 * 10 + 10
    assert sum(p.numel() for p in net.parameters()) == expected
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_zero_skips_a_layer_and_forces_count_zero():
    g = ChainGrammar(SLOTS, ACTIONS, COUNTS)
    layers = vgg11_layers()
    layers[3] = ["zero"]  # second conv slot skipped: channels flow through unchanged
    layers[2] = ["zero"]  # and the first pool
    arch = ChainArchitecture.from_slots(g.layers(g.tokens_of(layers)))
    assert len(arch.layers) == len(vgg11_layers()) - 2
    assert ChainNet(arch, 10)(torch.randn(1, 3, 32, 32)).shape == (1, 10)
    with pytest.raises(GrammarError, match="position 5"):
        g.encode(g.decode(g.tokens_of(vgg11_layers()))[:5] + ["64"] + g.decode(g.tokens_of(vgg11_layers()))[6:])


def test_every_op_builds_and_counts_follow_the_grammar():
    g = ChainGrammar(SLOTS, ACTIONS, COUNTS)
    for t in range(g.length):
        prefix = g.tokens_of(vgg11_layers())[:t]
        allowed = g.decode(g.legal(prefix))
        kind = SLOTS[t // 2]
        if t % 2 == 0:
            assert allowed == ACTIONS[kind]
        else:
            assert allowed == ([str(c) for c in COUNTS] if kind == "conv" else ["0"])
    for op in ACTIONS["conv"][:-1] + ACTIONS["pool"][:-1] + ACTIONS["act"][:-1]:
        arch = ChainArchitecture(((op, 8 if "conv" in op else 0),))
        assert ChainNet(arch, 10)(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    assert ChainArchitecture.from_json(arch.to_json()) == arch
