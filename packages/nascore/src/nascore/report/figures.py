"""Figures for reports: alpha evolution per edge, search curves, cell drawings (matplotlib).

Every figure goes through `_save`: numeric tick labels show the values themselves (no offset or
scientific multiplier in an axis corner), and it is written at DPI. Epoch and iteration axes
tick at integers (`_integer_x`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FormatStrFormatter, MaxNLocator, ScalarFormatter  # noqa: E402

from nascore.faults import maybe_kill  # noqa: E402
from nascore.genotype import CellGenotype  # noqa: E402
from nascore.layout import atomic_path  # noqa: E402

DPI = 150


def _plain_numbers(fig) -> None:
    """Tick labels that read as the values: no offset ("+2.079") and no "1e-5" multiplier in an axis
    corner, which a reader misses (near-uniform alphas and entropies over a short search trigger them)."""
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            fmt = axis.get_major_formatter()
            if isinstance(fmt, ScalarFormatter):
                fmt.set_useOffset(False)
                fmt.set_scientific(False)


def _integer_x(*axes) -> None:
    """Ticks at whole numbers only on an epoch or iteration x axis."""
    for ax in axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _save(fig, path: Path) -> Path:
    """Save atomically (`layout.atomic_path`): a killed report leaves the figure whole or absent, never a
    truncated PNG."""
    _plain_numbers(fig)
    fig.tight_layout()
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=DPI, format=path.suffix.lstrip("."))
            maybe_kill("report-figure")
    finally:
        plt.close(fig)
    return path


def plot_alphas(history: dict[str, Any], group: str, path: Path) -> Path:
    """softmax(alpha) of every op on every edge of one alpha group, over search epochs."""
    prims, edges = history["primitives"], history["edges"]
    epochs = [e["epoch"] for e in history["epochs"]]
    n = len(edges)
    cols = 5
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows), sharex=True, sharey=True,
                             squeeze=False)
    for i, (node, src) in enumerate(edges):
        ax = axes[i // cols][i % cols]
        for k, op in enumerate(prims):
            ys = [e["alphas"][group][i][k] for e in history["epochs"]]
            if not any(ys):  # an op this edge does not hold (per-edge candidates, e.g. StacNAS stage 2)
                continue
            ax.plot(epochs, ys, label=op, color=f"C{k}", marker="o" if len(epochs) < 10 else None, ms=3)
        ax.set_title(f"edge {src}->{node}", fontsize=9)
        ax.grid(alpha=0.3)
        _integer_x(ax)
    for j in range(n, rows * cols):
        axes[j // cols][j % cols].axis("off")
    legend = {}
    for ax in axes.flat:
        for h, label in zip(*ax.get_legend_handles_labels()):
            legend.setdefault(label, h)
    order = [op for op in prims if op in legend]
    fig.legend([legend[op] for op in order], order, loc="lower right", ncol=2, fontsize=8)
    fig.supxlabel("search epoch")
    fig.supylabel("softmax(alpha)")
    fig.suptitle(f"alpha evolution, {group} cells")
    return _save(fig, path)


def plot_search_curve(history: dict[str, Any], path: Path) -> Path:
    """Supernet validation error and alpha entropy per search epoch."""
    ep = [e["epoch"] for e in history["epochs"]]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    if all("val_err" in e for e in history["epochs"]):  # absent when no images were held out
        ax.plot(ep, [e["val_err"] for e in history["epochs"]], marker="o", label="supernet val error (%)")
    ax.set_xlabel("search epoch")
    _integer_x(ax)
    ax.set_ylabel("val error (%)")
    ax2 = ax.twinx()
    ax2.plot(ep, [e["entropy"] for e in history["epochs"]], color="tab:red", marker="s",
             label="mean alpha entropy")
    ax2.set_ylabel("entropy (nats)")
    fig.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_correlation(corr: list[list[float]], names: list[str], path: Path) -> Path:
    """Mean correlation of the candidate ops' outputs (the basis of grouping, seed 004 claim 2)."""
    fig, ax = plt.subplots(figsize=(5.5, 4.8))
    im = ax.imshow(corr, vmin=-1, vmax=1, cmap="RdBu_r")
    ax.set_xticks(range(len(names)), names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=8)
    for i, row in enumerate(corr):
        for j, v in enumerate(row):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title("op output correlation (warmed-up supernet)")
    return _save(fig, path)


def plot_levels(history: dict[str, Any], path: Path) -> Path:
    """Per alpha group and epoch: skip_connect ops a derivation would keep (seed 002, Fig. 3)
    and the mean per-edge entropy of softmax(alpha)."""
    ep = [e["epoch"] for e in history["epochs"]]
    last = history["epochs"][-1]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2))
    for k in sorted(k for k in last if k.startswith("skips_")):
        ax1.plot(ep, [e.get(k, 0) for e in history["epochs"]], marker="o", label=k[len("skips_"):])
    for k in sorted(k for k in last if k.startswith("entropy_")):
        ax2.plot(ep, [e.get(k, 0) for e in history["epochs"]], marker="s", label=k[len("entropy_"):])
    ax1.set_ylabel("skip_connect in derived cell")
    ax1.yaxis.set_major_locator(MaxNLocator(integer=True))  # a count
    ax2.set_ylabel("mean edge entropy (nats)")
    for ax in (ax1, ax2):
        ax.set_xlabel("search epoch")
        _integer_x(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)


def draw_cell(cell: CellGenotype, title: str, path: Path) -> Path:
    """The derived cell as a DAG: inputs left, nodes in the middle, concat output right."""
    n_nodes = len(cell.nodes)
    pos = {0: (0.0, 0.75), 1: (0.0, 0.25)}
    for j in range(n_nodes):
        pos[j + 2] = (1.0 + j, 0.9 - 0.8 * (j % 2))
    out = (n_nodes + 1.2, 0.5)
    names = {0: "c_{k-2}", 1: "c_{k-1}", **{j + 2: str(j) for j in range(n_nodes)}}
    fig, ax = plt.subplots(figsize=(2.0 + 1.6 * n_nodes, 3.0))
    for j, node in enumerate(cell.nodes):
        for k, (op, src) in enumerate(node):
            (x0, y0), (x1, y1) = pos[src], pos[j + 2]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", lw=1.2, shrinkA=14, shrinkB=14,
                                        connectionstyle="arc3,rad=0.15"))
            t = 0.3 + 0.35 * ((j + k) % 2)  # stagger labels so edges into one node do not collide
            ax.text(x0 + t * (x1 - x0), y0 + t * (y1 - y0) + 0.04, op, fontsize=7, ha="center",
                    bbox=dict(boxstyle="round,pad=0.15", fc="lightyellow", ec="none"))
    for i in cell.concat:
        ax.annotate("", xy=out, xytext=pos[i], arrowprops=dict(arrowstyle="->", lw=0.8, color="gray",
                                                               shrinkA=14, shrinkB=16))
    for i, (x, y) in pos.items():
        ax.text(x, y, names[i], ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="circle" if i > 1 else "round", fc="lightblue" if i > 1 else "lightgreen"))
    ax.text(*out, "c_{k}", ha="center", va="center", fontsize=9, bbox=dict(boxstyle="round", fc="wheat"))
    ax.set_xlim(-0.4, out[0] + 0.4)
    ax.set_ylim(-0.05, 1.1)
    ax.axis("off")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


_CHAIN_COLOURS = {"conv": "#4c72b0", "pool": "#dd8452", "act": "#55a868"}


def _chain_kind(op: str) -> str:
    return "conv" if "conv" in op else ("pool" if op[:3] in ("avg", "max") else "act")


def draw_chain(layers: list[list[Any]], title: str, path: Path) -> Path:
    """A chain architecture as a column of boxes, input at the top (seed 001, Fig. 10 style)."""
    n = len(layers) + 3
    fig, ax = plt.subplots(figsize=(3.6, 0.42 * n + 0.6))
    names = ["input 32x32x3", *[f"{op} ({c})" if c else op for op, c in layers], "global avg pool", "linear"]
    kinds = ["io", *[_chain_kind(op) for op, _ in layers], "pool", "io"]
    for i, (label, kind) in enumerate(zip(names, kinds)):
        y = n - 1 - i
        ax.add_patch(plt.Rectangle((0.05, y + 0.12), 0.9, 0.76, color=_CHAIN_COLOURS.get(kind, "#8c8c8c"),
                                   alpha=0.85))
        ax.text(0.5, y + 0.5, label, ha="center", va="center", color="white", fontsize=8)
        if i:
            ax.annotate("", (0.5, y + 0.88), (0.5, y + 1.12), arrowprops={"arrowstyle": "->", "lw": 0.8})
    ax.set_xlim(0, 1)
    ax.set_ylim(0, n)
    ax.axis("off")
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_rewards(children: list[dict[str, Any]], iterations: list[dict[str, Any]], path: Path) -> Path:
    """Every child's reward by iteration (screened / failed marked) and the controller's baseline."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    style = {"ok": ("o", "tab:blue", "passed screening"), "screened": ("x", "tab:orange", "screened out"),
             "failed": ("v", "tab:red", "failed (diverged)")}
    for status, (marker, colour, label) in style.items():
        pts = [(r["iteration"] + 1, r["reward"]) for r in children if r["status"] == status]
        if pts:
            ax.scatter(*zip(*pts), marker=marker, color=colour, label=label, s=18)
    if iterations:
        it = [e["iteration"] for e in iterations]
        ax.plot(it, [e["reward_mean"] for e in iterations], color="k", label="mean reward")
        if all("baseline" in e for e in iterations):
            ax.plot(it, [e["baseline"] for e in iterations], color="gray", ls="--", label="baseline")
    ax.set_xlabel("controller iteration")
    _integer_x(ax)
    ax.set_ylabel("reward")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, path)


def plot_openset(variants: dict[str, Any], path: Path) -> Path:
    """AUROC of both open-set scores per variant (mean over splits, std as error bars)."""
    names = [v for v, a in variants.items() if a.get("status") == "ok"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    width = 0.38
    for k, (key, label) in enumerate((("auroc_msp", "max softmax"), ("auroc_center_distance", "center distance"))):
        xs = [i + (k - 0.5) * width for i in range(len(names))]
        ax.bar(xs, [variants[v][key] for v in names], width, yerr=[variants[v][f"{key}_std"] for v in names],
               label=label, capsize=3)
    ax.axhline(0.5, color="gray", ls="--", lw=0.8)
    ax.set_xticks(range(len(names)), names)
    ax.set_ylabel("AUROC known vs unknown")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_error_vs_search_cost(ours: list[tuple[str, float, float]], papers: list[tuple[str, float, float]],
                              path: Path) -> Path:
    """CIFAR-10 error against search cost, (label, cost, error) points: ours in seconds on our hardware,
    the papers' in GPU-days (log scale), side by side and never on one axis."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    methods = list(dict.fromkeys(label.split(":")[0] for label, _, _ in [*ours, *papers]))  # one colour per method
    for ax, pts, unit in ((left, ours, "search wall clock, s (our hardware)"),
                          (right, papers, "search cost, GPU-days (as published, log)")):
        for i, (label, x, y) in enumerate(pts):  # a legend, not annotations: published points crowd together
            ax.scatter(x, y, s=36, marker="os^Dv<>p"[i % 8], label=label,
                       color=f"C{methods.index(label.split(':')[0]) % 10}")
        ax.set_xlabel(unit)
        ax.set_ylabel("CIFAR-10 test error, %")
        ax.grid(alpha=0.3)
        if pts:
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "nothing measured", ha="center", va="center", transform=ax.transAxes)
    left.set_title("ours (the profile's budget)")
    right.set_title("papers")
    if papers:
        right.set_xscale("log")
        for axis in (right.xaxis.set_major_formatter, right.xaxis.set_minor_formatter):
            axis(FormatStrFormatter("%g"))
    return _save(fig, path)
