"""The seed-variance protocol (issue 14): N searches x M trainings per method at a budget profile, mean
+- std over searches apart from the best of N; a run resumes from its ledger (wall clock included); its
MLflow runs are tagged so they never pass for the headline runs. Cell methods and vgg_rl measure the test
error, openset_rl the AUROC of its center-distance score."""
import json
import statistics

from nascore.cli import main

from conftest import set_yaml


def _variance(root, method="darts"):
    return json.loads((root / "reports" / "metrics" / f"{method}-variance.json").read_text())


def _metrics(root, name):
    return json.loads((root / "reports" / "metrics" / f"{name}.json").read_text())


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
    assert state["seconds"] > 0  # the wall clock so far travels with the ledger
    before = len(mlflow.search_runs(experiment_names=["darts"], output_format="list"))
    assert main(["--root", str(cifar_project), "variance", "--method", "darts"]) == 0
    after = len(mlflow.search_runs(experiment_names=["darts"], output_format="list"))
    assert after - before == 2  # one finetune and its evaluate, no search
    again = _variance(cifar_project)
    assert again["runs"] == runs and again["top1_err_over_searches"] == v["top1_err_over_searches"]
    assert again["seconds"] > state["seconds"]  # the resumed stage's seconds count the earlier segments too


def test_one_search_and_one_training_is_recorded_as_not_run(cifar_project):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.run.variance", {"searches": 1, "trainings": 1})
    assert main(["--root", str(cifar_project), "variance", "--method", "darts"]) == 0
    assert _variance(cifar_project)["status"] == "not run"


def test_vgg_rl_variance_search_0_training_0_is_its_ci_headline_run(cifar_project):
    assert main(["--root", str(cifar_project), "variance", "--method", "vgg_rl"]) == 0
    v = _variance(cifar_project, "vgg_rl")
    assert v["status"] == "ok" and (v["metric"], v["better"]) == ("top1_err", "lower") and len(v["runs"]) == 4
    runs = v["runs"]
    assert runs[0]["arch_hash"] == runs[1]["arch_hash"] and runs[2]["arch_hash"] == runs[3]["arch_hash"]
    per_search = [statistics.fmean([runs[2 * i]["top1_err"], runs[2 * i + 1]["top1_err"]]) for i in range(2)]
    assert v["top1_err"] == round(statistics.fmean(per_search), 3)
    assert v["best_of_n"]["search"] == min(range(2), key=lambda i: per_search[i])
    for stage in ("search", "generation"):
        assert main(["--root", str(cifar_project), "search", "--method", "vgg_rl", "--stage", stage]) == 0
    for command in ("finetune", "evaluate"):
        assert main(["--root", str(cifar_project), command, "--method", "vgg_rl", "--dataset", "cifar10"]) == 0
    headline = _metrics(cifar_project, "vgg_rl-cifar10")
    assert (headline["arch_hash"], headline["top1_err"]) == (runs[0]["arch_hash"], runs[0]["top1_err"])

    # the ledger knows every params section the runs read: a controller change starts it over
    import mlflow

    def searches():
        return len(mlflow.search_runs(experiment_names=["vgg_rl"], output_format="list",
                                      filter_string="tags.stage = 'search' and tags.variance LIKE 'search%'"))
    before = searches()
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.vgg_rl.controller.lr", 0.05)
    assert main(["--root", str(cifar_project), "variance", "--method", "vgg_rl"]) == 0
    assert searches() == before + 2


def test_openset_rl_variance_measures_the_auroc_of_its_own_variant(cifar_project):
    import mlflow

    assert main(["--root", str(cifar_project), "variance", "--method", "openset_rl"]) == 0
    v = _variance(cifar_project, "openset_rl")
    assert v["status"] == "ok" and v["dataset"] == "cifar10_osr"
    assert (v["metric"], v["better"]) == ("auroc_center_distance", "higher")
    runs = v["runs"]
    per_search = [statistics.fmean([runs[2 * i]["auroc_center_distance"], runs[2 * i + 1]["auroc_center_distance"]])
                  for i in range(2)]
    assert v["best_of_n"]["search"] == max(range(2), key=lambda i: per_search[i])  # higher is better
    assert v["auroc_center_distance_over_searches"]["mean"] == round(statistics.fmean(per_search), 4)
    assert main(["--root", str(cifar_project), "search", "--method", "openset_rl"]) == 0
    for command in ("finetune", "evaluate"):
        assert main(["--root", str(cifar_project), command, "--method", "openset_rl", "--dataset", "cifar10_osr"]) == 0
    headline, search = _metrics(cifar_project, "openset_rl-cifar10_osr"), _metrics(cifar_project, "openset_rl-search")
    assert headline["auroc_center_distance"] == runs[0]["auroc_center_distance"]
    assert search["variants"][headline["headline_variant"]]["best_arch_hash"] == runs[0]["arch_hash"]
    # the variance runs are tagged; the headline runs are not
    found = mlflow.search_runs(experiment_names=["openset_rl"], filter_string="tags.stage = 'evaluate'",
                               output_format="list")
    assert sorted(r.data.tags.get("variance", "-") for r in found) == \
        ["-", "search0-training0", "search0-training1", "search1-training0", "search1-training1"]


def test_openset_rl_variance_on_another_dataset_is_refused_before_any_search(cifar_project, capsys):
    set_yaml(cifar_project / "params" / "profiles.yaml", "ci.run.variance.dataset", "cifar100")
    assert main(["--root", str(cifar_project), "variance", "--method", "openset_rl"]) == 2
    assert "set run.variance.dataset: cifar10" in capsys.readouterr().err
    assert not (cifar_project / "runs" / "openset_rl" / "variance" / "search0").exists()
