"""The CLI: `info` knows every DAG dataset, and every subcommand says what it does."""
import json

import pytest

from nascore.cli import build_parser, main


def test_info_builds_the_imagenet_network_for_imagenette(capsys):
    out = {}
    for ds in ("imagenet", "imagenette"):
        assert main(["info", "darts_v2", "--dataset", ds, "--no-auxiliary"]) == 0
        out[ds] = json.loads(capsys.readouterr().out)
    assert out["imagenette"]["input"] == [3, 224, 224] and out["imagenette"]["layers"] == 14
    # the same network but its classifier: 1000 -> 10 classes of the last cell's 4 * 4 * 48 = 768 features
    diff = (out["imagenet"]["params_m"] - out["imagenette"]["params_m"]) * 1e6  # params_m: 4 decimals
    assert abs(diff - 990 * (768 + 1)) <= 100


def test_every_subcommand_has_help():
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    helps = {c.dest: c.help for c in sub._choices_actions}
    assert set(helps) >= {"info", "prepare", "search", "finetune", "evaluate", "report", "summary", "check-metrics"}
    assert all(helps.values()), helps


@pytest.mark.parametrize("args, expected", [
    (["--layers", "0"], "argument --layers: got '0'; allowed: an integer from 3 to 50 (cells); leave it out for "
                        "the default (20 CIFAR, 14 ImageNet)"),
    (["--layers", "-4"], "argument --layers: got '-4'; allowed: an integer from 3 to 50"),
    (["--layers", "1000000"], "argument --layers: got '1000000'; allowed: an integer from 3 to 50"),
    (["--channels", "x"], "argument --channels: got 'x'; allowed: an integer from 2 to 96 (initial channels)"),
    (["--channels", "0"], "argument --channels: got '0'; allowed: an integer from 2 to 96"),
])
def test_info_refuses_sizes_out_of_range_before_building(capsys, args, expected):
    with pytest.raises(SystemExit) as e:
        main(["info", "darts_v2", *args])
    out, err = capsys.readouterr()
    assert e.value.code == 2 and expected in err and not out


def test_info_names_a_genotype_path_that_is_not_a_file(tmp_path, capsys):
    assert main(["info", str(tmp_path)]) == 2
    assert f"error: genotype file {tmp_path} is a directory" in capsys.readouterr().err
    assert main(["info", "/dev/zero"]) == 2
    out, err = capsys.readouterr()
    assert "error: genotype file /dev/zero is not a regular file" in err and not out
