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


@pytest.mark.parametrize("key, value, expected", [
    ("search.lr", float("inf"), r"search\.lr: got inf, expected a finite number"),
    ("search.weight_decay", float("nan"), r"search\.weight_decay: got nan, expected a finite number"),
    ("search.arch_betas", [0.5, float("-inf")], r"search\.arch_betas\[1\]: got -inf, expected a finite number"),
    ("search.epochs", float("inf"), r"search\.epochs: got inf, expected a finite number"),
])
def test_non_finite_numbers_are_refused_naming_the_key(project, key, value, expected):
    set_yaml(project / "params" / "darts.yaml", key, value)  # written as .inf / .nan / -.inf
    with pytest.raises(ParamsError, match=rf"^params/darts.yaml: {expected} \(\.nan, \.inf and -\.inf are not allowed\)$"):
        METHODS["darts"].from_project(project)


def test_yaml_1_2_floats_without_a_dot_are_numbers(project):
    """PyYAML (YAML 1.1) reads 1e-3 as a string; DVC (YAML 1.2) as a number: we read what DVC reads."""
    from nascore.config import load_yaml

    path = project / "params" / "darts.yaml"
    text = path.read_text()
    assert "  lr: 0.025" in text
    path.write_text(text.replace("  lr: 0.025", "  lr: 3e-2", 1))  # search.lr, the first
    assert METHODS["darts"].from_project(project, "paper").p.search.lr == 0.03
    assert load_yaml("a: [1e-3, 5E-4, 1e+2, -2e3, 1.5e-2, 1_000, 1e, e5, 0x10]")["a"] == [
        0.001, 0.0005, 100.0, -2000.0, 0.015, 1000, "1e", "e5", 16]


def test_seed_is_bounded_to_numpy_range(project):
    set_yaml(project / "params" / "run.yaml", "run.seed", 2**32)
    with pytest.raises(ParamsError, match=r"^params/run.yaml: run\.seed: got 4294967296, allowed: >= 0 and <= 4294967295$"):
        METHODS["darts"].from_project(project)
    set_yaml(project / "params" / "run.yaml", "run.seed", 2**32 - 1)
    assert METHODS["darts"].from_project(project).params.run.seed == 2**32 - 1


@pytest.mark.parametrize("dotted, value, expected", [
    ("ci.darts", 5, r"ci\.darts: got 5; expected a mapping of the params/darts.yaml keys this profile overrides"),
    ("ci.run", [], r"ci\.run: got \[\]; expected a mapping of the params/run.yaml keys"),
    ("ci", "fast", r"ci: got 'fast'; expected a mapping of the sections this profile overrides"),
])
def test_a_profile_section_that_is_not_a_mapping_is_named(project, capsys, dotted, value, expected):
    from nascore.cli import main

    set_yaml(project / "params" / "profiles.yaml", dotted, value)
    with pytest.raises(ParamsError, match=rf"^params/profiles.yaml: {expected}"):
        METHODS["darts"].from_project(project)
    assert main(["--root", str(project), "search", "--method", "darts"]) == 2
    assert "params/profiles.yaml: " in capsys.readouterr().err
    assert not (project / "runs").exists()


@pytest.mark.parametrize("method, portion, counts", [
    ("darts", 0.001, "S_train = 0 and S_val = 200"),     # bi-level: each part a batch of 16
    ("darts", 0.999, "S_train = 200 and S_val = 0"),
    ("random_ws", 0.999, "S_train = 200 and S_val = 0"),  # one-level: S_val ranks, it needs an image
])
def test_a_train_portion_that_leaves_a_part_without_a_batch_fails_before_compute(cifar_project, capsys, method,
                                                                                 portion, counts):
    """On the ci profile's 200 images: no zero-step search with status ok, no StopIteration."""
    from nascore.cli import main

    set_yaml(cifar_project / "params" / f"{method}.yaml", "search.train_portion", portion)
    assert main(["--root", str(cifar_project), "search", "--method", method]) == 2
    err = capsys.readouterr().err
    assert (f"params/{method}.yaml: search.train_portion = {portion} (profile ci) splits the 200 prepared "
            f"cifar10 training images into {counts}; S_train needs at least one batch (search.batch_size = 16)") in err
    assert "set it between 0.08 and " in err and "e.g. 0.5" in err
    written = [*(cifar_project / "runs").rglob("*.*"), *(cifar_project / "reports").rglob("*.*")]
    assert not [f for f in written if f.suffix != ".lock"], written  # no genotype, status, metrics, checkpoint
    # `nascore check` says the same without running the stage
    assert main(["--root", str(cifar_project), "check"]) == 2
    assert f"params/{method}.yaml: search.train_portion = {portion}" in capsys.readouterr().err


def test_check_validates_every_method_without_compute(project, capsys):
    from nascore.cli import main

    assert main(["--root", str(project), "check", "--profile", "quick"]) == 0
    assert "params valid under the quick profile: run, data, darts" in capsys.readouterr().out
    set_yaml(project / "params" / "darts.yaml", "search.epochs", 0)
    set_yaml(project / "params" / "enas.yaml", "search.lr", float("nan"))
    assert main(["--root", str(project), "check"]) == 2
    err = capsys.readouterr().err
    assert "params/darts.yaml: search.epochs: got 0, allowed: >= 1" in err
    assert "params/enas.yaml: search.lr: got nan, expected a finite number" in err
    assert not (project / "runs").exists() and not (project / "data").exists()
