"""Evaluation networks against the paper: DARTS_V2 params (and MACs) via `nascore info`."""
import json

import pytest
import torch

from nascore.cli import main
from nascore.genotype import load_genotype
from nascore.models import create_model


def _info(capsys, *args):
    assert main(["info", *args]) == 0
    return json.loads(capsys.readouterr().out)


def test_cifar_darts_v2_params_match_paper(capsys):
    out = _info(capsys, "darts_v2", "--dataset", "cifar10")
    assert (out["layers"], out["channels"], out["auxiliary"]) == (20, 36, True)
    assert out["params_m"] == pytest.approx(3.3, rel=0.02)  # DARTS Table 1: 3.3M


def test_imagenet_darts_v2_params_and_macs(capsys):
    out = _info(capsys, "darts_v2", "--dataset", "imagenet")
    assert (out["layers"], out["channels"]) == (14, 48)
    assert out["params_m"] == pytest.approx(4.7, rel=0.03)  # DARTS Table 3: 4.7M
    # conv + linear MACs: 523M was measured for the same count in quark0/darts#46; the paper's
    # 574M is not reproducible by counting conv/linear (see reports/darts.md). Mobile: < 600M.
    assert out["macs_m"] == pytest.approx(523, rel=0.03)
    assert out["macs_m"] < 600


def test_info_accepts_a_genotype_file_and_sizes(tmp_path, capsys):
    path = tmp_path / "g.json"
    load_genotype("darts_v1").save(path)
    out = _info(capsys, str(path), "--dataset", "cifar10", "--layers", "8", "--channels", "16")
    assert out["layers"] == 8 and 0.1 < out["params_m"] < 1.0


def test_info_rejects_unknown_op(tmp_path, capsys):
    data = load_genotype("darts_v2").to_json()
    data["cells"]["normal"]["edges"][0][0] = "conv_9x9"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    assert main(["info", str(path)]) == 2
    assert "unknown op 'conv_9x9'" in capsys.readouterr().err


def test_auxiliary_head_only_in_training_and_drop_path_only_when_set():
    g = load_genotype("darts_v2")
    net = create_model("darts_cifar", genotype=g, C=8, layers=5, num_classes=10, auxiliary=True)
    x = torch.randn(2, 3, 32, 32)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (2, 10)
    net.eval()
    a, b = net(x), net(x)
    assert torch.equal(a, b)
    net.train()
    net.drop_path_prob = 0.5
    torch.manual_seed(0)
    y1 = net(x)[0]
    torch.manual_seed(1)
    y2 = net(x)[0]
    assert not torch.allclose(y1, y2)


def test_imagenet_network_forward():
    net = create_model("darts_imagenet", genotype=load_genotype("darts_v2"), C=8, layers=5,
                       num_classes=7, auxiliary=True)
    logits, aux = net(torch.randn(2, 3, 64, 64))
    assert logits.shape == aux.shape == (2, 7)


def test_auxiliary_heads_match_the_authors_code():
    """CIFAR's head has BatchNorm after its 768-channel conv, ImageNet's has not (quark0/darts model.py:
    commented out there to match the paper's runs); parameters counted as in that code."""
    from torch import nn

    from nascore.genotype import load_genotype
    from nascore.models import create_model

    g = load_genotype("darts_v2")
    for name, classes, final_bn in (("darts_cifar", 10, True), ("darts_imagenet", 1000, False)):
        head = create_model(name, genotype=g, num_classes=classes, auxiliary=True).auxiliary_head
        bns = [m for m in head.modules() if isinstance(m, nn.BatchNorm2d)]
        assert [b.num_features for b in bns] == ([128, 768] if final_bn else [128])
        c_aux = head.features[0].in_channels
        expected = c_aux * 128 + 2 * 128 + 128 * 768 * 4 + (2 * 768 if final_bn else 0) + 768 * classes + classes
        assert sum(p.numel() for p in head.parameters()) == expected
