"""Candidate ops: shapes, stride, registry errors; the reference mixed op's weighted sum."""
import pytest
import torch

from nascore.ops import MIXED_OPS, OPS
from nascore.spaces import PRIMITIVES


@pytest.mark.parametrize("name", PRIMITIVES + ("sep_conv_7x7", "conv_7x1_1x7"))
@pytest.mark.parametrize("stride", [1, 2])
def test_op_keeps_channels_and_applies_stride(name, stride):
    op = OPS[name](6, stride, True)
    y = op(torch.randn(2, 6, 8, 8))
    assert y.shape == (2, 6, 8 // stride, 8 // stride)


def test_none_is_zero_and_skip_is_identity():
    x = torch.randn(2, 4, 6, 6)
    assert torch.equal(OPS["none"](4, 1, False)(x), torch.zeros_like(x))
    assert torch.equal(OPS["skip_connect"](4, 1, False)(x), x)


def test_unknown_op_lists_registered():
    with pytest.raises(KeyError, match="unknown op 'conv_9x9'; registered: .*sep_conv_3x3"):
        OPS["conv_9x9"]


def test_reference_mixed_op_is_the_weighted_sum_of_its_ops():
    torch.manual_seed(0)
    mixed = MIXED_OPS["reference"](4, 1, PRIMITIVES).eval()
    x = torch.randn(2, 4, 8, 8)
    w = torch.softmax(torch.randn(len(PRIMITIVES)), 0)
    expected = sum(wk * op(x) for wk, op in zip(w, mixed._ops))
    torch.testing.assert_close(mixed(x, w), expected)
    one_hot = torch.zeros(len(PRIMITIVES))
    one_hot[PRIMITIVES.index("skip_connect")] = 1.0
    torch.testing.assert_close(mixed(x, one_hot), x)
