"""Report figures: values on the axes as they are (no offset or multiplier in a corner), whole-number
ticks on epoch and iteration axes, PNGs at >= 150 dpi. Each figure is built from small synthetic inputs
shaped like what report/markdown.py, report/rl.py, report/summary.py and methods/stacnas.py pass, chosen
so that matplotlib's defaults would offset the labels and tick between epochs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pytest
from matplotlib.ticker import ScalarFormatter
from PIL import Image

from nascore.genotype import CellGenotype
from nascore.report import figures

PRIMS = ["none", "max_pool_3x3", "skip_connect", "sep_conv_3x3"]
EDGES = [[2, 0], [2, 1], [3, 0], [3, 1], [3, 2]]
ENTROPY = [1.386294, 1.386291, 1.386285]  # near-uniform alphas over a short search: tiny changes


def _history() -> dict:
    epochs = []
    for i, h in enumerate(ENTROPY):
        w = [0.25 + 1e-5 * i * (k - 1.5) for k in range(len(PRIMS))]
        epochs.append({"epoch": i + 1, "alphas": {"normal_low": [w] * len(EDGES), "reduce_1": [w] * len(EDGES)},
                       "val_err": 90.0012 + 1e-4 * i, "entropy": h, "skips_normal_low": i % 2,
                       "skips_normal_mid": 1, "entropy_normal_low": h, "entropy_normal_mid": h - 1e-6})
    return {"primitives": PRIMS, "edges": EDGES, "epochs": epochs}


EPOCH_AXES = {  # name -> (figure function with its inputs, x is an epoch or iteration axis)
    "alphas": (lambda p: figures.plot_alphas(_history(), "normal_low", p), True),
    "search_curve": (lambda p: figures.plot_search_curve(_history(), p), True),
    "levels": (lambda p: figures.plot_levels(_history(), p), True),
    "rewards": (lambda p: figures.plot_rewards(
        [{"iteration": it, "reward": 0.81234 + 1e-5 * (it + c), "status": s}
         for it in range(3) for c, s in enumerate(("ok", "screened", "failed"))],
        [{"iteration": it + 1, "reward_mean": 0.81235 + 1e-5 * it, "baseline": 0.81233} for it in range(3)], p),
        True),
    "correlation": (lambda p: figures.plot_correlation([[1.0, 0.3], [0.3, 1.0]], ["sep_conv_3x3", "dil_conv_3x3"],
                                                       p), False),
    "cell": (lambda p: figures.draw_cell(CellGenotype(edges=(("sep_conv_3x3", 0), ("skip_connect", 1),
                                                             ("max_pool_3x3", 2), ("sep_conv_3x3", 0)),
                                                      concat=(2, 3)), "normal", p), False),
    "chain": (lambda p: figures.draw_chain([["conv3x3", 8], ["relu", None], ["max3x3", None]], "chain", p), False),
    "openset": (lambda p: figures.plot_openset(
        {"full": {"status": "ok", "auroc_msp": 0.61, "auroc_msp_std": 0.01, "auroc_center_distance": 0.62,
                  "auroc_center_distance_std": 0.02}, "softmax": {"status": "failed"}}, p), False),
    "cost": (lambda p: figures.plot_error_vs_search_cost(
        [("darts: quick", 1000.25, 90.0012), ("mldarts: quick", 1000.5, 90.0013)],
        [("darts: Table 1", 1.5, 3.0), ("enas: micro", 0.45, 2.89)], p), False),
}


@pytest.fixture
def saved(monkeypatch):
    """Keep every figure `_save` closes, to read its axes as they were written."""
    kept, close = [], plt.close
    monkeypatch.setattr(plt, "close", kept.append)
    yield kept
    for fig in kept:
        close(fig)


@pytest.mark.parametrize("name", sorted(EPOCH_AXES))
def test_figure_axes_show_plain_values_and_whole_epochs(name, tmp_path, saved):
    build, epoch_x = EPOCH_AXES[name]
    path = build(tmp_path / f"{name}.png")
    (fig,) = saved
    assert min(Image.open(path).info["dpi"]) >= 149.5  # PNG pHYs holds dots per metre: 150 dpi reads 149.99
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            assert axis.get_offset_text().get_text() == "", f"{name}: {axis.axis_name} axis has a corner label"
        if epoch_x and ax.axison:
            lo, hi = ax.get_xlim()
            ticks = [t for t in ax.get_xticks() if lo <= t <= hi]
            assert ticks and all(float(t).is_integer() for t in ticks), f"{name}: x ticks {ticks}"
        for axis in (ax.xaxis, ax.yaxis):  # and none appears for other data either
            fmt = axis.get_major_formatter()
            assert not isinstance(fmt, ScalarFormatter) or not fmt.get_useOffset(), f"{name}: {axis.axis_name}"


def test_the_inputs_would_offset_and_split_epochs_under_matplotlib_defaults(tmp_path):
    """The synthetic inputs are a real test: plotted plainly, they get an offset label and ticks between epochs."""
    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], ENTROPY)
    fig.savefig(tmp_path / "plain.png")
    assert ax.yaxis.get_offset_text().get_text() != ""
    assert not all(float(t).is_integer() for t in ax.get_xticks())
    plt.close(fig)
