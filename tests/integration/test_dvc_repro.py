"""End to end: `dvc repro` of the tiny ci profile in a temporary copy of the repo, then the
metric regression check against the committed baseline (tests/baselines/ci_metrics.json)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO, write_cifar_pickles

SHARED = REPO.parent / "shared" / "data"
pytestmark = pytest.mark.integration


def _copy_repo(dst: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, check=True,
                           capture_output=True, text=True).stdout.split("\n")
    for f in filter(None, files):
        src = REPO / f
        if src.is_file() and not f.startswith(("reports/", "dvc.lock")):
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)


def test_dvc_repro_ci_profile_end_to_end(tmp_path):
    root = tmp_path / "main"
    root.mkdir()
    _copy_repo(root)
    run_yaml = root / "params" / "run.yaml"
    run_yaml.write_text(run_yaml.read_text().replace("profile: quick", "profile: ci"))
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "NASREPRO_DATA")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    env["NASCORE_PROGRESS"] = "0"
    real_data = (SHARED / "cifar10-jpeg.tar.gz").is_file()
    if real_data:
        env["NASREPRO_DATA"] = str(SHARED)
    else:  # no shared data on this machine: small pickles the test writes (pipeline check only)
        write_cifar_pickles(root / "data" / "raw" / "cifar-10-batches-py", train_per_class=20, test_per_class=10)
    subprocess.run(["git", "init", "-q"], cwd=root, check=True)
    proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    metrics = {p.stem: json.loads(p.read_text()) for p in (root / "reports" / "metrics").glob("*.json")}
    assert metrics["darts-search"]["status"] == "ok"
    assert metrics["darts-cifar10"]["status"] == "ok" and 0 <= metrics["darts-cifar10"]["top1_err"] <= 100
    assert metrics["darts-cifar100"]["status"] == "not run"
    assert metrics["darts-cifar100"]["reason"].startswith("not run: no CIFAR-100 data at")
    assert metrics["darts-imagenet"]["status"] == "not run"
    report = (root / "reports" / "darts.md").read_text()
    assert "paper: DARTS (second order) + cutout, Table 1 | 2.76 ± 0.09" in report and "| ours: CIFAR-10" in report
    assert report.count("| darts/search (") == 1  # its runs table leaves out the variance stage's two searches
    assert (root / "reports" / "figures" / "darts" / "alphas_normal.png").stat().st_size > 1000

    # mldarts: same DAG, multi-level genotype, Tab. 1 row of this run, per-level skip figure
    assert metrics["mldarts-search"]["status"] == "ok" and metrics["mldarts-cifar10"]["status"] == "ok"
    ml = (root / "reports" / "mldarts.md").read_text()
    assert "paper: multi-level + entropy (gamma = 1), Tab. 2 | 2.69" in ml
    # Tab. 1 counts the CIFAR-10 evaluate runs at gamma 1 under the ci params but the variance stage's
    assert "| 1 | 3.00 | ci | 1 |" in ml and "| 0.1 | 3.05 | - | 0 |" in ml
    for cell in ("normal_low", "normal_mid", "normal_high", "reduce_1", "reduce_2"):
        assert (root / "reports" / "figures" / "mldarts" / f"cell_{cell}.png").is_file()
    assert (root / "reports" / "figures" / "mldarts" / "levels.png").is_file()

    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow' / 'mlflow.db'}")
    assert mlflow.search_runs(experiment_names=["mldarts"], filter_string="tags.gamma = '1'",
                              output_format="list")
    runs = mlflow.search_runs(experiment_names=["darts"], output_format="list")
    headline = [r for r in runs if "variance" not in r.data.tags]  # the variance stage's runs carry their tag
    search = [r for r in headline if r.data.tags.get("stage") == "search"]
    assert len(search) == 1
    ghash = search[0].data.tags["genotype_hash"]
    assert ghash == metrics["darts-search"]["genotype_hash"]
    evaluate = [r for r in headline if r.data.tags.get("stage") == "evaluate"]
    assert evaluate and all(r.data.tags["genotype_hash"] == ghash for r in evaluate)
    assert all(r.data.tags.get("mlflow.parentRunId") for r in evaluate)
    art = mlflow.artifacts.download_artifacts(f"runs:/{search[0].info.run_id}/genotype.json")
    assert json.loads(Path(art).read_text())["schema"] == "nascore.genotype/1"

    # one MLflow schema: every method's evaluate runs carry the same headline metrics, tags and params
    from nascore.tracking.schema import HEADLINE, check_run
    evaluated = set()
    for exp in mlflow.search_experiments():
        for r in mlflow.search_runs(experiment_ids=[exp.experiment_id], filter_string="tags.stage = 'evaluate'",
                                    output_format="list"):
            missing = check_run(r.data.metrics, r.data.tags)
            assert not missing, f"{exp.name} {r.info.run_name}: {missing}"
            assert r.data.tags["method"] == exp.name and r.data.params.get("profile") == "ci"
            evaluated.add(exp.name)
    assert evaluated == {"darts", "mldarts", "stacnas", "random_ws", "enas", "vgg_rl", "openset_rl"}, evaluated
    assert set(HEADLINE) <= set(mlflow.search_runs(experiment_names=["vgg_rl"], filter_string="tags.stage = 'evaluate'",
                                                   output_format="list")[0].data.metrics)

    # vgg_rl: controller search -> generation -> fine-tune -> evaluate, report with Tables 3 and 4
    assert metrics["vgg_rl-search"]["status"] == "ok" and metrics["vgg_rl-generation"]["status"] == "ok"
    assert metrics["vgg_rl-cifar10"]["status"] == "ok" and metrics["vgg_rl-cifar100"]["status"] == "not run"
    vgg = (root / "reports" / "vgg_rl.md").read_text()
    assert "| paper: VGG-Lite (the paper's result) | 2.63 |" in vgg and "| ours: ranked first |" in vgg
    assert (root / "reports" / "figures" / "vgg_rl" / "best_architecture.png").is_file()
    # openset_rl: every variant searched, open-set metrics per split, CIFAR+10 recorded as not run
    osr = metrics["openset_rl-cifar10_osr"]
    assert osr["status"] == "ok" and set(osr["variants"]) == set(metrics["openset_rl-search"]["variants"])
    assert metrics["openset_rl-cifar_plus10"]["status"] == "not run"
    assert "| full |" in (root / "reports" / "openset_rl.md").read_text()
    children = [r for r in mlflow.search_runs(experiment_names=["openset_rl"], output_format="list")
                if r.data.tags.get("stage") == "search-child"]
    assert children and all(r.data.tags.get("mlflow.parentRunId") for r in children)

    # every method side by side, the papers' rows beside ours
    summary = (root / "reports" / "summary.md").read_text()
    for m in ("darts", "mldarts", "stacnas", "vgg_rl", "random_ws", "enas"):
        assert f"| {m} | **ours** (ci profile, seed 0, n = 1;" in summary and f"| {m} | paper: " in summary
    for m in ("darts", "mldarts", "stacnas", "random_ws", "enas", "vgg_rl"):  # seed variance: 2 searches x 2 trainings
        assert metrics[f"{m}-variance"]["status"] == "ok" and len(metrics[f"{m}-variance"]["runs"]) == 4
        assert f"| {m} | **ours, seed variance** (ci profile at the ci budget, 2 searches x 2 trainings; n = 2" in summary
    assert metrics["openset_rl-variance"]["metric"] == "auroc_center_distance"
    assert "| openset_rl | cifar10_osr, **ours, seed variance** (ci profile at the ci budget, 2 searches" in summary
    assert "| nas_rl | paper, not reproduced here:" in summary

    # seed 003's baselines: the best ranked architecture of each is the one fine-tuned
    for m in ("random_ws", "enas"):
        assert metrics[f"{m}-search"]["status"] == "ok" and metrics[f"{m}-cifar10"]["status"] == "ok"
        ranking = json.loads((root / "runs" / m / "search" / "ranking.json").read_text())
        assert ranking["architectures"][0]["genotype_hash"] == metrics[f"{m}-cifar10"]["genotype_hash"]
        assert "## Ranking by the shared weights" in (root / "reports" / f"{m}.md").read_text()

    # DVC plots: every search's curve is declared and renders (dvc plots show --json)
    shown = subprocess.run([sys.executable, "-m", "dvc", "plots", "show", "--json"], cwd=root, env=env,
                           capture_output=True, text=True)
    assert shown.returncode == 0, shown.stderr[-2000:]
    for m in ("darts", "mldarts", "stacnas", "random_ws", "enas", "vgg_rl", "openset_rl"):
        assert f"reports/plots/{m}-search.tsv" in shown.stdout, m
    for m in ("darts", "mldarts", "stacnas", "random_ws", "enas", "stacnas-search_stage1"):
        plot = f"reports/plots/{m if '-' in m else f'{m}-search'}-alphas.tsv"
        assert plot in shown.stdout, plot  # alpha traces, drawn by the template .dvc/plots/alphas.json
    assert (root / "reports" / "plots" / "darts-search.tsv").read_text().splitlines()[0].split("\t") == \
        ["epoch", "train_loss", "train_err", "val_err", "entropy"]
    assert "| openset_rl | cifar10_osr (full," in summary
    assert (root / "reports" / "figures" / "summary" / "error_vs_search_cost.png").is_file()

    # no DVC-tracked output holds a machine path: a clone elsewhere gets the same hashes
    import yaml
    machine = [str(tmp_path).encode(), str(REPO).encode(), str(SHARED.resolve()).encode()]
    lock = yaml.safe_load((root / "dvc.lock").read_text())["stages"]
    outs = {o["path"] for stage in lock.values() for o in stage.get("outs", [])}
    files = [f for o in outs for f in ([root / o] if (root / o).is_file() else (root / o).rglob("*")) if f.is_file()]
    assert len(files) > 20
    leaks = [str(f.relative_to(root)) for f in files if any(m in f.read_bytes() for m in machine)]
    assert not leaks, f"machine paths in DVC-tracked outputs: {leaks}"

    if real_data:  # CI's regression gate: fresh metrics against the committed baseline
        check = subprocess.run([sys.executable, "-m", "nascore.cli", "check-metrics",
                                "--baseline", str(REPO / "tests" / "baselines" / "ci_metrics.json"),
                                "--metrics", str(root / "reports" / "metrics"),
                                "--bands", str(REPO / "params" / "regression.yaml")],
                               capture_output=True, text=True)
        print(check.stdout)
        assert check.returncode == 0, check.stdout + check.stderr

        # a planted regression (the architecture learning rate 100x too large in this copy) fails the gate
        import yaml as _yaml
        prof = root / "params" / "profiles.yaml"
        data = _yaml.safe_load(prof.read_text())
        data["ci"]["darts"]["search"]["arch_lr"] = 0.03
        prof.write_text(_yaml.safe_dump(data, sort_keys=False))
        proc = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        planted = subprocess.run(check.args, capture_output=True, text=True)
        print(planted.stdout)
        assert planted.returncode != 0, planted.stdout
        failed = [line for line in planted.stdout.splitlines() if "CHANGED" in line or "REGRESSED" in line]
        assert failed and all(line.split()[0].startswith("darts-") for line in failed), planted.stdout
