"""Metric regression check: fresh DVC metrics against committed baselines, with tolerance
bands from params (DVC has no bands; this is the `dvc metrics diff` table plus a verdict)."""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from nascore.config import from_dict, read_yaml, spec
from nascore.layout import write_json


@dataclass(frozen=True)
class Band:
    """How far a metric may move before it counts as a regression."""

    better: Literal["lower", "higher", "equal"] = spec(doc="which direction is an improvement")
    abs_tol: float = spec(0.0, ge=0.0, doc="allowed change in the worse direction, absolute")
    rel_tol: float = spec(0.0, ge=0.0, doc="... or relative to the baseline, whichever is larger")


@dataclass(frozen=True)
class Bands:
    bands: dict[str, Band]
    exact: list[str] = spec(default_factory=list, doc="fields that must equal the baseline exactly (e.g. genotype_hash: the "
                                      "architecture found; a float band cannot say the search changed)")


def collect(metrics_dir: Path) -> dict[str, dict[str, Any]]:
    """{file stem: metrics} for every metrics JSON in a folder."""
    return {p.stem: json.loads(p.read_text()) for p in sorted(metrics_dir.glob("*.json"))}


def compare(baseline: dict[str, dict[str, Any]], fresh: dict[str, dict[str, Any]],
            bands: dict[str, Band], exact: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """One row per (file, banded or exact metric) of the baseline, with a verdict."""
    rows = []
    for name, base in sorted(baseline.items()):
        new = fresh.get(name, {})
        for field in exact:
            if field in base:
                status = "ok" if new.get(field) == base[field] else "MISSING" if field not in new else "CHANGED"
                rows.append({"file": name, "metric": field, "baseline": base[field], "new": new.get(field),
                             "change": None, "allowed": 0, "better": "equal", "status": status})
        for metric, band in bands.items():
            if metric not in base:
                continue
            b, n = base[metric], new.get(metric)
            allowed = max(band.abs_tol, band.rel_tol * abs(b))
            if n is None:
                status, change = "MISSING", None
            else:
                change = n - b
                worse = {"lower": change, "higher": -change, "equal": abs(change)}[band.better]
                status = "REGRESSED" if worse > allowed + 1e-9 else "ok"
            rows.append({"file": name, "metric": metric, "baseline": b, "new": n, "change": change,
                         "allowed": allowed, "better": band.better, "status": status})
        if base.get("status") == "ok" and new.get("status") != "ok":
            rows.append({"file": name, "metric": "status", "baseline": "ok", "new": new.get("status"),
                         "change": None, "allowed": 0, "better": "equal", "status": "REGRESSED"})
    return rows


def format_table(rows: list[dict[str, Any]]) -> str:
    head = ["Path", "Metric", "Baseline", "New", "Change", "Band", "Status"]
    body = [[r["file"], r["metric"], _f(r["baseline"]), _f(r["new"]),
             _f(r["change"], signed=True), f"{r['better']} ±{_f(r['allowed'])}", r["status"]] for r in rows]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *body)]
    line = lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths))  # noqa: E731
    return "\n".join([line(head), *(line(b) for b in body)])


def _f(v: Any, signed: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) or isinstance(v, int) and not isinstance(v, bool):
        return f"{v:+.4g}" if signed else f"{v:.4g}"
    return str(v)


def check_metrics(baseline: Path, metrics_dir: Path, bands_file: Path, out=sys.stdout) -> int:
    """Print the diff table; return 1 when any banded metric regressed or went missing, or an exact one
    changed."""
    config = from_dict(Bands, read_yaml(bands_file), str(bands_file))
    if not baseline.is_file():
        print(f"error: baseline {baseline} does not exist; create it with "
              f"`python -m nascore.regression --write-baseline {metrics_dir} {baseline}`", file=out)
        return 2
    rows = compare(json.loads(baseline.read_text()), collect(metrics_dir), config.bands, config.exact)
    print(format_table(rows), file=out)
    bad = [r for r in rows if r["status"] != "ok"]
    print(f"\n{len(rows) - len(bad)} within bands or equal, {len(bad)} regressed, changed or missing", file=out)
    return 1 if bad else 0


def write_baseline(metrics_dir: Path, baseline: Path) -> None:
    """Freeze the current metrics as the committed baseline."""
    write_json(baseline, collect(metrics_dir))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--write-baseline":
        write_baseline(Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        print("usage: python -m nascore.regression --write-baseline METRICS_DIR BASELINE_JSON")
        sys.exit(2)
