"""Refresh tests/baselines/ci_metrics.json: run the ci profile in a temporary copy of the repo
(the same run CI's integration test does) and freeze its metrics. Run via `make baseline`."""
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from integration.test_dvc_repro import SHARED, _copy_repo  # noqa: E402

from conftest import REPO  # noqa: E402
from nascore.regression import write_baseline  # noqa: E402

if __name__ == "__main__":
    if not (SHARED / "cifar10-jpeg.tar.gz").is_file():
        sys.exit(f"the baseline is measured on the real data in {SHARED}; it is not there")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "main"
        root.mkdir()
        _copy_repo(root)
        run_yaml = root / "params" / "run.yaml"
        run_yaml.write_text(run_yaml.read_text().replace("profile: quick", "profile: ci"))
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        env.update(NASREPRO_DATA=str(SHARED), NASCORE_PROGRESS="0",
                   PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=root, env=env, check=True)
        write_baseline(root / "reports" / "metrics", REPO / "tests" / "baselines" / "ci_metrics.json")
    print("wrote tests/baselines/ci_metrics.json")
