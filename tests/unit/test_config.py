"""Params validation: wrong keys, types and ranges fail before compute, naming what is wrong."""
import pytest

from nascore.config import ParamsError
from nascore.methods import METHODS

from conftest import set_yaml


def test_repo_params_load_for_every_profile(project):
    for profile in ("paper", "quick", "ci"):
        p = METHODS["darts"].from_project(project, profile).params
        assert p.method.search.supernet.primitives[0] == "none"
    paper = METHODS["darts"].from_project(project, "paper").p
    assert (paper.search.epochs, paper.search.supernet.C, paper.search.supernet.layers) == (50, 16, 8)
    assert (paper.finetune.cifar.layers, paper.finetune.cifar.C, paper.finetune.cifar.epochs) == (20, 36, 600)


def test_unknown_key_names_key_and_allowed(project):
    set_yaml(project / "params" / "darts.yaml", "search.epoch", 3)
    with pytest.raises(ParamsError, match=r"^params/darts.yaml: search\.epoch: unknown key; allowed keys: .*epochs"):
        METHODS["darts"].from_project(project).params


def test_wrong_type_names_value_and_expected(project):
    set_yaml(project / "params" / "darts.yaml", "search.batch_size", "sixty-four")
    with pytest.raises(ParamsError, match=r"search\.batch_size: got 'sixty-four' \(str\), expected an integer"):
        METHODS["darts"].from_project(project).params


def test_out_of_range_names_bounds(project):
    set_yaml(project / "params" / "darts.yaml", "search.train_portion", 1.5)
    with pytest.raises(ParamsError, match=r"train_portion: got 1.5, allowed: > 0.0 and < 1.0"):
        METHODS["darts"].from_project(project).params


def test_choice_lists_allowed_values(project):
    set_yaml(project / "params" / "darts.yaml", "search.order", 3)
    with pytest.raises(ParamsError, match=r"order: got 3, expected one of 1, 2"):
        METHODS["darts"].from_project(project).params


def test_unknown_op_in_primitives(project):
    set_yaml(project / "params" / "darts.yaml", "search.supernet.primitives", ["none", "conv_9x9"])
    with pytest.raises(ParamsError, match=r"unknown op 'conv_9x9'; allowed: .*sep_conv_3x3"):
        METHODS["darts"].from_project(project).params


def test_profile_override_is_validated_too(project):
    set_yaml(project / "params" / "profiles.yaml", "ci.darts.search.lr", -1)
    with pytest.raises(ParamsError, match=r"^params/profiles.yaml: ci\.darts\.search\.lr: got -1.0, allowed: > 0.0$"):
        METHODS["darts"].from_project(project).params


def test_unknown_profile(project):
    with pytest.raises(ParamsError, match=r"profile: got 'fast'; defined in params/profiles.yaml: ci, paper, quick"):
        METHODS["darts"].from_project(project, "fast").params


def test_cli_reports_params_error_before_compute(project, capsys):
    from nascore.cli import main

    set_yaml(project / "params" / "darts.yaml", "search.epochs", 0)
    assert main(["--root", str(project), "search", "--method", "darts"]) == 2
    assert "search.epochs: got 0, allowed: >= 1" in capsys.readouterr().err
    assert not (project / "runs").exists() and not (project / "reports").exists()


def test_a_key_given_twice_is_an_error_naming_both_lines(project):
    """PyYAML would keep the last value silently while DVC rejects the file: we refuse it, with the lines."""
    path = project / "params" / "darts.yaml"
    path.write_text(path.read_text() + "evaluate:\n  batch_size: 64\n")
    with pytest.raises(ParamsError, match=r"params/darts.yaml: key 'evaluate' appears twice in one mapping \(lines \d+ and \d+\)"):
        METHODS["darts"].from_project(project)


def test_every_params_file_has_unique_keys():
    from conftest import REPO
    from nascore.config import read_yaml

    for path in sorted((REPO / "params").glob("*.yaml")):
        assert isinstance(read_yaml(path), dict), path


def test_a_base_value_a_profile_overrides_is_named_with_the_key_to_change(project, capsys):
    """`dvc exp run -S params/darts.yaml:search.epochs=8` under the quick profile would run 4 epochs silently:
    the change is named, with the profile key that wins and how to set it."""
    import subprocess

    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    subprocess.run([*git, "add", "params"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "params"], cwd=project, check=True)
    set_yaml(project / "params" / "darts.yaml", "search.epochs", 8)
    set_yaml(project / "params" / "darts.yaml", "evaluate.batch_size", 64)  # no profile overrides it: no word
    p = METHODS["darts"].from_project(project, "quick").p
    err = capsys.readouterr().err
    assert p.search.epochs == 4
    assert ("params/darts.yaml: search.epochs = 8 (committed: 50) has no effect: params/profiles.yaml: "
            "quick.darts.search.epochs = 4 overrides it; change that key instead "
            "(dvc exp run -S params/profiles.yaml:quick.darts.search.epochs=...)") in err
    assert "batch_size" not in err
