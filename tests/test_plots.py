"""What the figures promise a reader: captions that stay readable on the page, legends that do
not cover the data, lines that do not hide each other and points that say whose they are."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pebench_core import plots  # noqa: E402


def test_image_grid_fits_the_page_and_wraps_long_captions():
    imgs = [np.zeros((8, 8, 3))] * 12
    fig = plots.image_grid(imgs, [f"train: Someone With A Long Name {i}" for i in range(12)], ncols=8, size=1.6)
    assert fig.get_size_inches()[0] <= plots.PAGE_WIDTH_IN + 1e-9
    titles = [ax.title for ax in fig.axes if ax.title.get_text()]
    assert len(titles) == 12 and all(t.get_fontsize() >= 9 for t in titles)
    assert all("\n" in t.get_text() for t in titles)  # wrapped, not running into the neighbour
    plt.close(fig)


def test_bar_legends_sit_outside_the_panels():
    df = pd.DataFrame(
        {"concept": ["person"] * 4, "metric": ["efficacy", "retain"] * 2, "method": list("aabb"), "value": [0.1, 0.2, 0.3, 0.4]}
    )
    fig = plots.metric_bars(df)
    assert len(fig.legends) == 1 and all(ax.get_legend() is None for ax in fig.axes)
    plt.close(fig)


def test_runs_that_agree_stay_distinguishable_and_points_are_labelled():
    tr = pd.DataFrame({"step": [0, 5, 10], "efficacy/person": [0, 1, 1], "efficacy/event": [0, 1, 1]})
    fig = plots.concept_trajectories({"gd": tr, "gd+bgd": tr})
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 3]
    assert len(lines) == 2 and lines[0].get_linestyle() != lines[1].get_linestyle()
    plt.close(fig)
    side = pd.DataFrame(
        {
            "concept": ["person", "person"],
            "metric": ["efficacy", "retain"],
            "table": ["Table 1"] * 2,
            "same_measure": [True, False],
            "paper": [0.9, 0.2],
            "ours": [0.8, 0.3],
            "method": ["ga", "po"],
        }
    )
    fig = plots.ours_vs_paper(side)
    assert sorted(t.get_text() for t in fig.axes[0].texts) == ["ga", "po"]
    plt.close(fig)
