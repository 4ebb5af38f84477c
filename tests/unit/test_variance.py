"""The seed-variance protocol (issue 14): N searches x M trainings per cell method at a budget profile,
mean +- std over searches apart from the best of N; a run resumes from its ledger; its MLflow runs are
tagged so they never pass for the headline runs."""
import json
import statistics

from nascore.cli import main

from conftest import set_yaml


def _variance(root):
    return json.loads((root / "reports" / "metrics" / "darts-variance.json").read_text())


def test_n_searches_by_m_trainings_mean_std_and_best_of_n(cifar_project):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.darts.search.epochs", 1)
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.darts.finetune.cifar.epochs", 1)
    assert main(["--root", str(cifar_project), "variance", "--method", "darts"]) == 0
    v = _variance(cifar_project)
    assert v["status"] == "ok" and (v["searches"], v["trainings"]) == (2, 2) and v["budget_profile"] == "ci"
    runs = v["runs"]
    assert [(r["search_seed"], r["train_seed"]) for r in runs] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert runs[0]["genotype_hash"] == runs[1]["genotype_hash"] and runs[2]["genotype_hash"] == runs[3]["genotype_hash"]
    per_search = [statistics.fmean([runs[0]["top1_err"], runs[1]["top1_err"]]),
                  statistics.fmean([runs[2]["top1_err"], runs[3]["top1_err"]])]
    assert v["top1_err_over_searches"] == {"mean": round(statistics.fmean(per_search), 3),
                                           "std": round(statistics.stdev(per_search), 3), "n": 2}
    assert v["top1_err_over_runs"]["n"] == 4
    best = min(range(2), key=lambda i: per_search[i])
    assert v["best_of_n"] == {"search": best, "top1_err": round(per_search[best], 3),
                              "genotype_hash": runs[2 * best]["genotype_hash"]}
    # search seed 0, training seed 0 at the ci budget is the headline run of the ci profile: the same numbers
    assert main(["--root", str(cifar_project), "search", "--method", "darts"]) == 0
    assert main(["--root", str(cifar_project), "finetune", "--method", "darts", "--dataset", "cifar10"]) == 0
    assert main(["--root", str(cifar_project), "evaluate", "--method", "darts", "--dataset", "cifar10"]) == 0
    headline = json.loads((cifar_project / "reports" / "metrics" / "darts-cifar10.json").read_text())
    assert (headline["genotype_hash"], headline["top1_err"]) == (runs[0]["genotype_hash"], runs[0]["top1_err"])

    import mlflow
    tagged = mlflow.search_runs(experiment_names=["darts"], filter_string="tags.variance = 'search1-training1'",
                                output_format="list")
    assert sorted(r.data.tags["stage"] for r in tagged) == ["evaluate", "finetune"]

    # a rerun after a kill does only what its ledger lacks, and ends with the same numbers
    ledger = cifar_project / "runs" / "darts" / "variance" / "ledger.json"
    state = json.loads(ledger.read_text())
    del state["runs"]["1/1"]
    ledger.write_text(json.dumps(state))
    before = len(mlflow.search_runs(experiment_names=["darts"], output_format="list"))
    assert main(["--root", str(cifar_project), "variance", "--method", "darts"]) == 0
    after = len(mlflow.search_runs(experiment_names=["darts"], output_format="list"))
    assert after - before == 2  # one finetune and its evaluate, no search
    again = _variance(cifar_project)
    assert again["runs"] == runs and again["top1_err_over_searches"] == v["top1_err_over_searches"]


def test_one_search_and_one_training_is_recorded_as_not_run(cifar_project):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.run.variance", {"searches": 1, "trainings": 1})
    assert main(["--root", str(cifar_project), "variance", "--method", "darts"]) == 0
    assert _variance(cifar_project)["status"] == "not run"


def test_a_controller_method_is_refused(cifar_project, capsys):
    assert main(["--root", str(cifar_project), "variance", "--method", "vgg_rl"]) == 2
    assert "vgg_rl is not a cell method" in capsys.readouterr().err
