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
    # two rows of long names and a word wider than an image: no caption overprints a
    # neighbour's caption or any image, and none is cut in the middle of a word
    names = [f"Someone Longnamed {i}" for i in range(19)] + ["photographyphotography"]
    fig = plots.image_grid([np.zeros((64, 64, 3))] * 20, names, ncols=10, size=1.6)
    fig.canvas.draw()  # titles and image boxes take their places when drawn
    renderer = fig.canvas.get_renderer()
    captions = [ax.title for ax in fig.axes]
    assert not _overlapping(captions, renderer)
    for t in captions:
        box = t.get_window_extent(renderer)
        assert not [ax for ax in fig.axes if box.overlaps(ax.get_window_extent(renderer))], t.get_text()
    last = captions[-1]  # shrunk to the smallest font first, and only then broken
    assert last.get_text().replace("\n", "") == names[-1] and last.get_fontsize() == plots.MIN_FONT_PT
    assert [t.get_text().count("\n") for t in captions[:-1]] == [2] * 19  # three words, three lines, whole
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


# ---------------------------------------------------------------------------------------
# Every figure kind at the page's width: drawn as wide as the page shows it (so its text is not
# scaled down), no text below the bound, no tick labels over each other, a legend entry for
# every series drawn. Thirteen methods and three targets: as many as the tiny book draws.

METHODS = ["ga", "gd", "kl", "po", "dpo", "npo", "simnpo", "undial", "siu", "rmu", "task_vector", "gd+bgd", "kl+bgd"]
MODELS = ["finetune", *METHODS, "goal"]
PANELS = [("person", "person"), ("event", "event"), ("both", "person"), ("both", "event")]


def _summary(metrics, value=0.5):
    rows = []
    for t, c in PANELS:
        for m in MODELS:
            if m.endswith("+bgd") and t != "both":
                continue
            for k, metric in enumerate(metrics):
                v = (value + 0.03 * k + 0.01 * len(m)) % 1
                rows.append(
                    {"target": t, "concept": c, "method": m, "metric": metric, "mean": v, "ci_lo": v - 0.1, "ci_hi": v + 0.1}
                )
    return pd.DataFrame(rows)


def _figures():
    traj = pd.DataFrame({"step": [0, 10, 20, 30, 40], "forget_loss": [-1, -2, -3, -4, -5], "retain_loss": [1, 1, 1, 1, 1],
                         "loss": [0, -1, -2, -3, -4], "efficacy/person": [0, 0.2, 0.4, 0.6, 0.8],
                         "efficacy/event": [0, 0.1, 0.2, 0.3, 0.4],
                         "weight/person": [1, 1.2, 1.5, 2, 4], "weight/event": [1, 0.8, 0.6, 0.5, 0.25],
                         "grad_norm_ratio": [1, 2, 4, 8, 16]})  # fmt: skip
    res = pd.DataFrame([{"concept": c, "metric": m, "method": x, "value": 0.5}
                        for c in ("person", "event") for m in ("efficacy", "generality", "retain", "scope", "real", "world_fact")
                        for x in MODELS])  # fmt: skip
    svs = pd.DataFrame([{"concept": c, "method": m, "single": 0.5, "single_lo": 0.4, "single_hi": 0.6, "both": 0.4,
                         "both_lo": 0.3, "both_hi": 0.5} for c in ("person", "event") for m in METHODS])  # fmt: skip
    grid = pd.DataFrame({"lr": [3e-4, 1e-3, 3e-3], "efficacy/person": [0.1, 0.5, 0.9], "retain/person": [0.9, 0.8, 0.3],
                         "efficacy/event": [0.1, 0.3, 0.6], "retain/event": [0.9, 0.9, 0.5], "criterion": [0.5, 0.6, 0.55],
                         "kept": [False, True, False]})  # fmt: skip
    matrix = pd.DataFrame([[0.1, -0.2], [0.3, 0.0]], index=["person", "event"], columns=["person", "event"])
    deltas = pd.DataFrame([{"direction": d, "images": i, "delta": 0.1 * k} for d in ("person → event", "event → person")
                           for i in ("forget", "retain") for k in range(-3, 4)])  # fmt: skip
    forest = pd.DataFrame([{"finding": f"finding {k // 6 + 1}", "subject": f"{m} on person", "estimate": 0.1, "lo": -0.1,
                            "hi": 0.3, "verdict": ("reproduced", "contradicted", "inconclusive")[k % 3]}
                           for k, m in enumerate(METHODS * 3)])  # fmt: skip
    side = pd.DataFrame([{"concept": c, "metric": x, "table": t, "same_measure": t == "Table 1", "paper": 0.25 * k,
                          "ours": 1 - 0.25 * k, "method": m}
                         for c in ("person", "event") for x in ("efficacy", "generality", "retain", "scope", "real", "world_fact")
                         for t in ("Table 1", "Table 2") for k, m in enumerate([*METHODS[:4], "task_vector"])])  # fmt: skip
    curves = pd.DataFrame([{"target": t, "concept": c, "method": m, "steps": s, "mean": 0.5}
                           for t, c in PANELS for m in MODELS if t == "both" or not m.endswith("+bgd")
                           for s in (0, 5, 10, 20)])  # fmt: skip
    measures = ["paraphrase", "blur", "crop", "colour", "noise", "jpeg", "quant_int8", "relearn_10", "mia_loss", "mia_mink"]
    sites = ["probe_tower", "probe_projector", "probe_lm"]
    surv = pd.DataFrame([{"target": t, "concept": c, "method": m, "measure": x, "d": 0.2, "verdict": "holds"}
                         for t, c in PANELS for m in METHODS for x in measures])  # fmt: skip
    train = pd.DataFrame([{"model": m, "phase": ph, "step": s, "loss": 2.0 / (1 + s)}
                          for m in ("base", "finetune", "goal(person)", "goal(event)", "goal(both)")
                          for ph in ("vision", "language") for s in range(40)])  # fmt: skip
    yield "training_curves", plots.training_curves(train)
    yield "metric_bars", plots.metric_bars(res)
    yield "trajectory", plots.trajectory(traj)
    yield "single_vs_both", plots.single_vs_both(svs)
    yield "concept_trajectories", plots.concept_trajectories({m: traj for m in ("gd", "gd+bgd", "kl", "kl+bgd")})
    yield "lr_grid", plots.lr_grid({"person": grid, "event": grid, "both": grid})
    yield "bgd_balance", plots.bgd_balance({"gd+bgd": traj, "kl+bgd": traj}, max_weight=4.0)
    yield "interference_heatmaps", plots.interference_heatmaps({m: matrix for m in METHODS})
    yield "paired_deltas", plots.paired_deltas(deltas)
    yield (
        "estimate_forest",
        plots.estimate_forest(
            forest,
            title="Every sub-test of the five findings (95 % intervals over the people and events, the book's verdict rule)",
        ),
    )
    yield (
        "ours_vs_paper",
        plots.ours_vs_paper(side, title="Ours against the paper (filled: same kind of measure; hollow: different event scorer)"),
    )
    yield "relearn_curves", plots.relearn_curves(curves, MODELS)
    yield "probe_heatmap", plots.probe_heatmap(_summary(measures), measures, MODELS)
    yield "mia_auc", plots.mia_auc(_summary(["mia_loss", "mia_mink"]), MODELS)
    yield "probe_sites", plots.probe_sites(_summary(sites), MODELS)
    yield "survival_heatmap", plots.survival_heatmap(surv)


def _overlapping(labels, renderer) -> list[tuple[str, str]]:
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in labels if t.get_visible() and t.get_text()]
    return [(a, b) for i, (a, x) in enumerate(boxes) for b, y in boxes[i + 1 :] if x.overlaps(y)]


def test_every_figure_fits_the_page_with_readable_text_and_complete_legends():
    import matplotlib.text

    for name, fig in _figures():
        renderer = fig.canvas.get_renderer()
        width = fig.get_tightbbox(renderer).width  # inches, as the page shows it (bbox_inches="tight")
        assert width <= plots.PAGE_WIDTH_IN + 0.3, (name, width)
        texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
        small = sorted({(t.get_text(), t.get_fontsize()) for t in texts if t.get_fontsize() < plots.MIN_FONT_PT})
        assert not small, (name, small[:5])
        for ax in fig.axes:
            if ax.get_visible():
                assert not _overlapping(ax.get_xticklabels(), renderer), (name, _overlapping(ax.get_xticklabels(), renderer))
                assert not _overlapping(ax.get_yticklabels(), renderer), name
                assert not _overlapping(ax.texts, renderer), (name, _overlapping(ax.texts, renderer)[:3])
        if name in ("relearn_curves", "probe_sites"):  # a line per model, the BGD methods in target both only
            labels = {t.get_text() for legend in fig.legends for t in legend.get_texts()}
            assert set(MODELS) <= labels, (name, set(MODELS) - labels)
        plt.close(fig)


def test_method_lines_are_told_apart_by_colour_or_dash():
    styles = {m: plots._line_style(m, plots._method_palette(MODELS)) for m in MODELS}
    pairs = {(str(s["color"]), str(s["ls"])) for s in styles.values()}
    assert len(pairs) == len(MODELS)
