"""reports/summary.md: every method's rows (ours with provenance, not-run reasons kept) beside the
papers' rows from params, per dataset, and the error-against-cost figure (test inputs, not results)."""
import json
import shutil

from conftest import REPO
from nascore.report.summary import search_cost_s, write_summary

METHODS = ["darts", "mldarts", "openset_rl", "stacnas", "vgg_rl"]


def _metrics(root, name, **fields):
    d = root / "reports" / "metrics"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{name}.json").write_text(json.dumps(fields))


def test_summary_puts_every_method_beside_the_papers(tmp_path):
    shutil.copytree(REPO / "params", tmp_path / "params")
    run = {"profile": "quick", "hardware": "CPU X", "epochs": 5, "train_images": 600, "test_images": 500}
    _metrics(tmp_path, "darts-search", status="ok", search_seconds=80.0)
    _metrics(tmp_path, "darts-cifar10", status="ok", top1_err=85.4, top5_err=30.8, params_m=0.3213, macs_m=53.35,
             genotype_hash="cd2c54d5c8fd", dataset="CIFAR-10 (JPEG q75 re-encoding)", **run)
    _metrics(tmp_path, "darts-cifar100", status="not run", reason="not run: no CIFAR-100 data at data/raw")
    _metrics(tmp_path, "stacnas-search", status="ok", search_seconds=23.5, search_seconds_total=55.1)
    _metrics(tmp_path, "stacnas-cifar10", status="ok", top1_err=75.6, top5_err=20.0, params_m=0.2764, macs_m=46.56,
             genotype_hash="4f333a46e69e", dataset="CIFAR-10 (JPEG q75 re-encoding)", **run)
    _metrics(tmp_path, "vgg_rl-search", status="ok", search_seconds=17.2)
    _metrics(tmp_path, "vgg_rl-generation", status="ok", generation_seconds=3.7)
    _metrics(tmp_path, "vgg_rl-cifar10", status="ok", top1_err=69.8, top5_err=14.6, params_m=0.1446, macs_m=3.29,
             arch_hash="00f93846561a", dataset="CIFAR-10 (JPEG q75 re-encoding)", **{**run, "epochs": 10})
    _metrics(tmp_path, "openset_rl-cifar10_osr", status="ok", headline_variant="full", known_dataset="CIFAR-10",
             closed_acc=0.334, auroc_msp=0.5155, auroc_center_distance=0.5315, oscr_msp=0.1985, profile="quick",
             epochs=4, hardware="CPU X")
    assert search_cost_s({"stacnas-search": {"status": "ok", "search_seconds": 23.5, "search_seconds_total": 55.1}},
                         "stacnas") == 55.1  # every search stage
    md = write_summary(tmp_path, METHODS, seed=0).read_text()

    c10 = md.split("## CIFAR-10 (JPEG q75 re-encoding)")[1].split("\n## ")[0]
    assert ("| darts | **ours** (quick profile, seed 0, n = 1; arch `cd2c54d5c8fd`) | 85.4 | 30.8 | 0.321 | 53.35 | "
            "80 s | 5 epochs, 600 train / 500 test images; CPU X |") in c10
    assert "| stacnas | **ours** (quick profile, seed 0, n = 1; arch `4f333a46e69e`) | 75.6 |" in c10 and "| 55.1 s |" in c10
    assert "| vgg_rl | **ours** (quick profile, seed 0, n = 1; arch `00f93846561a`) | 69.8 |" in c10 and "| 20.9 s |" in c10
    # the papers' rows from params, with their tables and costs in GPU-days
    assert "| darts | paper: DARTS (second order) + cutout, Table 1 | 2.76 ± 0.09 | - | 3.3 | - | 4 GPU-days |" in c10
    assert "| stacnas | paper: StacNAS base (DARTS' final training), README table, mean of 8 runs, best 2.33 | 2.48 ± 0.08 |" in c10
    assert "| mldarts | paper: multi-level + entropy (gamma = 1), Tab. 2 | 2.69 |" in c10
    assert "| darts | ours | not run: no CIFAR-100 data at data/raw |" in md
    assert "| openset_rl | cifar10_osr (full, CIFAR-10) | 0.334 | 0.515 | 0.531 | 0.199 |" in md
    assert (tmp_path / "reports" / "figures" / "summary" / "error_vs_search_cost.png").stat().st_size > 10_000
    assert "- stacnas: StacNAS (Li, Li, Zhang et al." in md  # every paper row's source named


def test_methods_we_do_not_run_are_rows_marked_not_reproduced(tmp_path):
    """Seed 003's NAS-RL and MetaQNN rows come from params/not_reproduced.yaml, marked as such, beside the
    baselines' own published rows (random_ws, enas)."""
    shutil.copytree(REPO / "params", tmp_path / "params")
    md = write_summary(tmp_path, [*METHODS, "enas", "random_ws"], seed=0).read_text()
    c10 = md.split("## CIFAR-10")[1].split("\n## ")[0]
    assert "| nas_rl | paper, not reproduced here: NAS (Zoph & Le 2017), 800 GPUs x 21-28 days, ENAS Table 1 | 4.47 |" in c10
    assert "| metaqnn | paper, not reproduced here: Macro NAS + Q-Learning (MetaQNN" in c10 and "| 6.92 |" in c10
    assert "| random_ws | paper: Random search with weight sharing, average of the final architecture's runs, " \
           "Table 5 | 2.85 ± 0.08 |" in c10
    assert "| enas | paper: ENAS + micro search space + CutOut, Table 1 | 2.89 | - | 4.6 | - | 0.45 GPU-days |" in c10
    assert "- nas_rl, metaqnn (not reproduced here): Pham et al. ICML 2018 (ENAS), Table 1" in md
