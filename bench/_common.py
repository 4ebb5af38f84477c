"""Shared by the GPU benchmark scripts: device naming, CUDA-event timing (warm-up excluded, median
of runs), peak memory, and appending one JSON line per measurement to reports/bench/<bench>.json.
Numbers are written only when measured on CUDA; CPU runs are smoke tests and only print."""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

REPORTS = Path(__file__).resolve().parents[1] / "reports" / "bench"
SRC = Path(__file__).resolve().parents[1] / "packages" / "nascore" / "src"
if importlib.util.find_spec("nascore") is None:  # a bare GPU machine with torch but no `make setup`
    sys.path.insert(0, str(SRC))


def parser(doc: str, *, steps: bool = True, runs: bool = True) -> argparse.ArgumentParser:
    """The options every benchmark shares; scripts add their sizes (steps / runs: for timed loops)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda")
    if steps:
        p.add_argument("--warmup", type=int, default=3, help="untimed steps first")
        p.add_argument("--steps", type=int, default=10, help="steps per timed run")
    if runs:
        p.add_argument("--runs", type=int, default=5, help="timed runs; the median is reported")
    p.add_argument("--no-save", action="store_true", help="print only, do not append to reports/bench/")
    return p


def darts_strategy(model: torch.nn.Module, *, order: int, epochs: int = 1, **runtime):
    """DARTS' search strategy with the paper's numbers from params/darts.yaml (search: lr, momentum,
    arch_lr, ...) and the bench's own order, epochs and runtime switches (autocast, layout, graphs)."""
    from nascore.methods import METHODS
    from nascore.strategies.darts import DifferentiableSearch

    p = METHODS["darts"].from_project(SRC.parents[2], "paper").p.search
    return DifferentiableSearch(model, epochs=epochs, **{**DifferentiableSearch.hyper_parameters(p), "order": order},
                                **runtime)


def original_optimizers(strategy) -> None:
    """The original train_search.py's optimizers on the same numbers: torch's default (per-tensor on
    CPU, foreach on CUDA) SGD and Adam instead of nascore's explicit foreach ones."""
    w, a = strategy.w_optim.param_groups[0], strategy.a_optim.param_groups[0]
    strategy.w_optim = torch.optim.SGD(strategy.weights, w["lr"], momentum=w["momentum"], weight_decay=w["weight_decay"])
    strategy.a_optim = torch.optim.Adam(strategy.alphas, lr=a["lr"], betas=a["betas"], weight_decay=a["weight_decay"])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"


def get_device(name: str) -> torch.device:
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device: run with --device cpu for a smoke test (numbers are not kept)")
    return device


def time_steps(step: Callable[[], None], device: torch.device, *, warmup: int, steps: int, runs: int,
               reset_peak: bool = True) -> tuple[float, float | None]:
    """Median seconds per step over `runs` runs of `steps` steps after `warmup` steps, and the peak
    memory (MiB) on CUDA: of the timed steps, or since the caller last reset it (`reset_peak=False`:
    a CUDA graph's memory is allocated at capture, and its replays allocate nothing)."""
    for _ in range(warmup):
        step()
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        if reset_peak:
            torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(runs):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(steps):
                step()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end) / 1000 / steps)
        else:
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            times.append((time.perf_counter() - t0) / steps)
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if cuda else None
    return statistics.median(times), peak


def measure_all(measure: Callable[[str], dict], variants: list[str], bench: str, device: torch.device,
                save: bool) -> list[dict]:
    """measure(variant) for every variant, each row printed (and on CUDA appended) the moment it is
    measured; one that fails (e.g. a compile error on this GPU) is reported on stderr as a JSON line
    with its error and the others still run: GPU time is scarce."""
    rows = []
    for v in variants:
        try:
            row = measure(v)
        except Exception as e:  # noqa: BLE001 (any failure of one variant)
            print(json.dumps({"bench": bench, "impl": v, "error": f"{type(e).__name__}: {e}"[:2000]}),
                  file=sys.stderr, flush=True)
        else:
            rows.append(row)
            emit(row, rows, bench, device, save)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return rows


def append_lines(bench: str, rows: list[dict]) -> None:
    """Append measured rows to reports/bench/<bench>.json (one JSON line each)."""
    REPORTS.mkdir(parents=True, exist_ok=True)
    with (REPORTS / f"{bench}.json").open("a") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)


def emit(row: dict, rows: list[dict], bench: str, device: torch.device, save: bool) -> None:
    """Add speedup_vs_eager_fp32 (against the 'eager_fp32' row measured in this run, if any: a variant
    run in its own process gets it from bench/summarise.py), print the JSON line, and append it to
    reports/bench/<bench>.json when measured on CUDA."""
    base = next((r for r in rows if r["impl"] == "eager_fp32"), None)
    row["speedup_vs_eager_fp32"] = None if base is None else round(row["images_per_s"] / base["images_per_s"], 2)
    print(json.dumps(row), flush=True)
    if save and device.type == "cuda":
        append_lines(bench, [row])


def original_darts_step(strategy, batch) -> dict:
    """One search step as the original train_search.py takes it, on a DifferentiableSearch's model and
    optimisers: the same updates as `strategy.step`, but every backward computes all gradients (the
    alpha step also every weight gradient, the weight step every alpha gradient) and half are discarded.
    The baselines of supernet_step.py run this; nascore's step computes only what each optimiser uses."""
    (xt, yt), (xv, yv) = batch
    model, s = strategy.model, strategy
    s.a_optim.zero_grad(set_to_none=True)
    if s.order == 1:
        with s._autocast():
            loss = F.cross_entropy(model(xv), yv)
        loss.backward()
    else:
        s._unrolled_backward(xt, yt, xv, yv)
    s.a_optim.step()
    s.w_optim.zero_grad(set_to_none=True)
    with s._autocast():
        loss = F.cross_entropy(model(xt), yt)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.weight_parameters(), s.grad_clip)
    s.w_optim.step()
    return {"loss": loss.detach()}
