"""Bring a GPU session's measurements home: append the JSON lines of `bench.jsonl` (bench/gpu_session.sh's
$OUT) that were measured on a GPU to reports/bench/<bench>.json, skipping lines already there, and
rewrite reports/bench.md. CPU lines (smoke runs) are never kept as results.

  python bench/ingest.py /path/to/out/bench.jsonl
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from summarise import ROOT, summarise


def ingest(lines_file: Path, root: Path = ROOT) -> dict[str, int]:
    """Lines appended per bench."""
    added: dict[str, int] = {}
    for line in lines_file.read_text().splitlines():
        if not line.startswith("{"):
            continue
        row = json.loads(line)
        if "bench" not in row or "error" in row or str(row.get("device", "CPU")).startswith("CPU"):
            continue
        target = root / "reports" / "bench" / f"{row['bench']}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        existing = set(target.read_text().splitlines()) if target.exists() else set()
        text = json.dumps(row)
        if text not in existing:
            with target.open("a") as f:
                f.write(text + "\n")
            added[row["bench"]] = added.get(row["bench"], 0) + 1
    summarise(root)
    return added


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("lines", type=Path)
    p.add_argument("--root", type=Path, default=ROOT)
    a = p.parse_args()
    print(f"appended {ingest(a.lines, a.root)}; wrote {a.root / 'reports' / 'bench.md'}")
