"""The CLI: `info` knows every DAG dataset, and every subcommand says what it does."""
import json

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
