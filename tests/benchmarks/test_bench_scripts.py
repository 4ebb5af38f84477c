"""The GPU benchmark scripts run end to end on CPU at toy sizes (so they do not rot between GPU
sessions) and print JSON lines with the fields reports/bench.md needs. CPU runs write nothing."""
import json
import subprocess
import sys

import pytest

from conftest import REPO

FIELDS = {"bench", "device", "impl", "batch", "images_per_s", "peak_mem_mb_per_image", "speedup_vs_eager_fp32"}
SMOKE = {
    "supernet_step.py": ["--batch", "4", "--layers", "3", "--C", "4", "--warmup", "1", "--steps", "1", "--runs", "1"],
    "derived_train.py": ["--batch", "4", "--layers", "3", "--C", "8", "--warmup", "1", "--steps", "1", "--runs", "1",
                         "--variants", "eager_fp32", "bf16_cl"],
    "data_pipeline.py": ["--images", "200", "--batch", "50", "--runs", "1"],
}


@pytest.mark.parametrize("script", sorted(SMOKE))
def test_bench_script_smoke_on_cpu(script, tmp_path):
    before = sorted((REPO / "reports" / "bench").glob("*.json")) if (REPO / "reports" / "bench").is_dir() else []
    r = subprocess.run([sys.executable, str(REPO / "bench" / script), "--device", "cpu", *SMOKE[script]],
                       capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert rows and all(FIELDS <= set(row) and row["images_per_s"] > 0 for row in rows)
    assert all(row["device"].startswith("CPU") for row in rows)
    after = sorted((REPO / "reports" / "bench").glob("*.json")) if (REPO / "reports" / "bench").is_dir() else []
    assert after == before  # CPU smoke numbers are never kept as results
