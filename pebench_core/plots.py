"""The book's figures, one function per kind of figure (seaborn on matplotlib).

Each function returns the matplotlib Figure so a chapter can show it, save it or tweak it.
"""

from __future__ import annotations

import io
import textwrap
from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from IPython import get_ipython
from IPython.display import Image, display
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.ticker import FixedLocator, NullLocator

from .metrics import paper_metric_order

sns.set_theme(context="notebook", style="whitegrid")


# The book's text column is about 757 pixels wide, and a chapter's figures are drawn at 100 dots
# per inch: a figure wider than 7.4 inches (its legend included) is scaled down on the page, and
# its text with it (a 7-point label on a 14-inch figure reads at about 5 pixels). Every figure is
# therefore at most this wide: panels wrap into rows, legends sit below them, and no text is
# smaller than MIN_FONT_PT (9.7 pixels at full size). On a phone a figure keeps this size and
# scrolls inside its box (book/_static), so its text stays as large there.
PAGE_WIDTH_IN = 7.4
MIN_FONT_PT = 7.0
# An off-screen canvas to measure text with, as the Agg renderer of the notebook draws it.
_MEASURE = FigureCanvasAgg(Figure(dpi=72)).figure


def _fit(text, title: str):
    """Wrap ``text`` (a title artist showing ``title``) until, as drawn, it is no wider than the
    page, or than its axes for an axes title (a long title widened its figure past the page)."""
    fig = text.get_figure()
    renderer = fig.canvas.get_renderer()
    width = PAGE_WIDTH_IN * fig.dpi
    if text.axes is not None:
        fig.tight_layout()
        width = min(width, text.axes.get_window_extent(renderer).width)
    chars = len(title)
    while chars > 20 and text.get_window_extent(renderer).width > width:
        chars = int(chars * 0.9)
        text.set_text(textwrap.fill(title, chars))
    return text


def _suptitle(fig, title: str, y: float = 1.02):
    """The figure's title above its panels; wrapped to the page, its further lines go up, not
    over the panels' own titles."""
    return _fit(fig.suptitle(title, y=max(1.0, y - 0.02), va="bottom"), title)


def _grid(n: int, panel_w: float, panel_h: float, **kw):
    """``n`` panels of about ``panel_w`` × ``panel_h`` inches, as many side by side as fit the
    page and the rest in further rows (unused cells hidden); returns ``(fig, axes)``, axes 2-D."""
    n = max(1, n)
    ncols = max(1, min(n, int(PAGE_WIDTH_IN // panel_w)))
    nrows = -(-n // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(PAGE_WIDTH_IN, ncols * panel_w), nrows * panel_h), squeeze=False, **kw)
    for ax in axes.flat[n:]:
        ax.set_visible(False)
    return fig, axes


def _legend_below(fig, handles, labels, title: str | None = None, fontsize: float = 9):
    """One legend for the figure, centred below its panels, in as many columns as fit the page
    (a legend right of the panels widened the figure past the page, and shrank everything)."""
    if not handles:
        return None
    renderer = fig.canvas.get_renderer()
    ncol = len(labels)
    while True:  # the most columns whose legend, as drawn, fits the page
        legend = fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=ncol, fontsize=fontsize,
                            frameon=False, title=title, title_fontsize=fontsize)  # fmt: skip
        if ncol == 1 or legend.get_window_extent(renderer).width <= PAGE_WIDTH_IN * fig.dpi:
            return legend
        legend.remove()
        ncol -= 1


def _all_handles(axes) -> tuple[list, list]:
    """Every panel's legend entries, once each by label (a series drawn only in a later panel,
    such as the BGD methods of target both, still gets its entry)."""
    seen: dict = {}
    for ax in axes.flat:
        for h, lab in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(lab, h)
    return list(seen.values()), list(seen)


def image_grid(
    images: Sequence,
    titles: Sequence[str] | None = None,
    ncols: int = 8,
    size: float = 1.6,
    title: str | None = None,
    fontsize: int = 9,
    show: bool = True,
):
    """A grid of images with a caption above each. The grid is at most :data:`PAGE_WIDTH_IN`
    wide (``size`` shrinks to fit), so that captions keep their size on the page; long
    captions wrap to the width of their image instead of running into the next one. In a
    notebook (``show``) the grid is shown as a JPEG (:func:`_show_as_jpeg`)."""

    n = len(images)
    ncols = max(1, min(ncols, n)) if n else max(1, ncols)
    nrows = max(1, -(-n // ncols))
    size = min(size, PAGE_WIDTH_IN / ncols)
    # captions wrap between words, measured in the font they are drawn in; a word wider than
    # the image gets a smaller font (never under MIN_FONT_PT) rather than being cut in two
    wrapped, sizes = None, []
    if titles is not None:
        wrapped = []
        for t in map(str, titles):
            text, points = _wrap_to(t, size * 72 * 0.94, fontsize)
            wrapped.append(text)
            sizes.append(points)
    lines = max((w.count("\n") + 1 for w in wrapped), default=0) if wrapped else 0
    caption = lines * fontsize * 1.3 / 72 + 0.04  # inches of caption above each image
    gap = 0.12  # inches between a row's images and the next row's captions
    height = nrows * (caption + size + gap)
    fig = plt.figure(figsize=(ncols * size, height))
    # each image in a square of its own, placed by hand: tight_layout squeezed the rows until
    # a row's captions overprinted the images above them
    pad = 0.03 * size
    for k in range(n):
        r, c = divmod(k, ncols)
        bottom = height - (r + 1) * (caption + size + gap) + gap
        ax = fig.add_axes(((c * size + pad) / (ncols * size), bottom / height, (size - 2 * pad) / (ncols * size), size / height))
        ax.axis("off")
        ax.imshow(images[k], interpolation="nearest")
        if wrapped is not None:
            ax.set_title(wrapped[k], fontsize=sizes[k], pad=4)
    if title:
        _suptitle(fig, title, y=1.0)
    if show:
        _show_as_jpeg(fig)
    return fig


def _text_width(text: str, points: float) -> float:
    """How wide ``text`` (its widest line) is drawn, in points."""
    renderer = _MEASURE.canvas.get_renderer()
    font = FontProperties(size=points)
    return (
        max(renderer.get_text_width_height_descent(line, font, ismath=False)[0] for line in text.split("\n")) * 72 / _MEASURE.dpi
    )


def _wrap_to(text: str, width: float, points: float) -> tuple[str, float]:
    """``text`` wrapped between words to ``width`` points, and the font size that lets its
    longest word fit (``points`` at most, :data:`MIN_FONT_PT` at least: below that, a word
    that still does not fit is broken)."""
    words = text.split()
    while points > MIN_FONT_PT and words and max(_text_width(w, points) for w in words) > width:
        points = max(MIN_FONT_PT, points - 0.5)
    lines: list[str] = []
    for word in words:
        while _text_width(word, points) > width and len(word) > 1:  # only at the minimum size
            cut = max(k for k in range(1, len(word)) if _text_width(word[:k], points) <= width or k == 1)
            lines.append(word[:cut])
            word = word[cut:]
        if lines and _text_width(f"{lines[-1]} {word}", points) <= width:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    return "\n".join(lines), points


def _show_as_jpeg(fig) -> None:
    """In a notebook, show a figure of pictures as a JPEG and close it: rendered pictures are
    noise to PNG (a grid of twenty 64-pixel renders weighs half a megabyte as PNG, a tenth of
    that as JPEG). Elsewhere (a script, a test) the figure is left as it is."""
    shell = get_ipython()
    if shell is None or type(shell).__name__ != "ZMQInteractiveShell":
        return
    buf = io.BytesIO()
    fig.savefig(buf, format="jpeg", dpi=fig.dpi, bbox_inches="tight", pil_kwargs={"quality": 90})
    plt.close(fig)
    display(Image(data=buf.getvalue(), format="jpeg"))


def count_bars(
    df: pd.DataFrame,
    column: str,
    hue: str | None = None,
    title: str = "",
    ax=None,
    order: Sequence[str] | None = None,
    horizontal: bool = True,
):
    """Counts of the values of ``column`` (optionally split by ``hue``) as a bar chart."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, max(2.5, 0.28 * df[column].nunique())))
    order = list(order) if order is not None else df[column].value_counts().index.tolist()
    if horizontal:
        sns.countplot(data=df, y=column, hue=hue, order=order, ax=ax)
    else:
        sns.countplot(data=df, x=column, hue=hue, order=order, ax=ax)
    ax.set_title(title)
    return ax.figure


def histogram(df: pd.DataFrame, column: str, hue: str | None = None, title: str = "", bins: int = 12, ax=None):
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3))
    sns.histplot(data=df, x=column, hue=hue, bins=bins, multiple="stack", ax=ax)
    if ax.get_legend() is not None:  # below the axis: inside, it covered the last bars
        n = len(ax.get_legend().get_texts())
        sns.move_legend(ax, "upper center", bbox_to_anchor=(0.5, -0.22), ncol=min(n, 4), frameon=False, fontsize=9)
    ax.set_title(title)
    return ax.figure


def metric_bars(df: pd.DataFrame, title: str = "", hue_order: Sequence[str] | None = None):
    """Grouped bars of a results frame (columns concept, metric, method, value): one panel per
    concept, the six metrics side by side, one bar per model. Higher is better everywhere."""
    df = df.reset_index(drop=True)  # frames stacked with pd.concat repeat index labels
    concepts = [c for c in ("person", "event") if c in set(df["concept"])]
    fig, axes = _grid(len(concepts), PAGE_WIDTH_IN, 3.3)
    for ax, concept in zip(axes.flat, concepts):
        d = df[df["concept"] == concept]
        sns.barplot(
            data=d,
            x="metric",
            y="value",
            hue="method",
            order=[m for m in paper_metric_order() if m in set(d["metric"])],
            hue_order=hue_order,
            ax=ax,
            errorbar=None,
        )
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{concept} unlearning" if concept else "")
        ax.set_xlabel("")
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.tight_layout()
    # one legend, below the panels: inside, it covered the bars it names
    _legend_below(fig, *_all_handles(axes))
    if title:
        _suptitle(fig, title, y=1.02)
    return fig


def training_curves(curves: pd.DataFrame, title: str = "Training curves", window: int = 10):
    """Each model's training loss per step (``curves``: ``model``, ``step``, ``loss`` and, where
    a model trains in phases, ``phase``), smoothed over ``window`` steps, on a log scale; one
    panel per phase, side by side as the page allows, one legend below."""
    keys = ["model", "phase"] if "phase" in curves else ["model"]
    c = curves.assign(smoothed=curves.groupby(keys)["loss"].transform(lambda s: s.rolling(window, min_periods=1).mean()))
    phases = list(dict.fromkeys(c["phase"])) if "phase" in c else [None]
    fig, axes = _grid(len(phases), 3.7, 3.0)
    models = list(dict.fromkeys(c["model"]))
    palette = dict(zip(models, sns.color_palette("deep", len(models))))
    for ax, phase in zip(axes.flat, phases):
        sub = c if phase is None else c[c["phase"] == phase]
        for m in models:
            g = sub[sub["model"] == m].sort_values("step")
            if not g.empty:
                ax.plot(g["step"], g["smoothed"], color=palette[m], label=m, lw=1.4)
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel(f"loss (mean of {window} steps)")
        if phase is not None:
            ax.set_title(f"phase: {phase}", fontsize=10)
    fig.tight_layout()
    _legend_below(fig, *_all_handles(axes))
    if title:
        _suptitle(fig, title, y=1.02)
    return fig


def trajectory(traj: pd.DataFrame, title: str = ""):
    """Forget and retain losses per step (left) and the efficacy checks (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.2))
    loss_cols = [c for c in ("forget_loss", "retain_loss", "loss") if c in traj]
    long = traj.melt(id_vars="step", value_vars=loss_cols, var_name="term", value_name="value").dropna()
    sns.lineplot(data=long, x="step", y="value", hue="term", ax=axes[0])
    axes[0].set_title("loss terms")
    eff = [c for c in traj.columns if c.startswith("efficacy/")]
    if eff:
        e = traj.melt(id_vars="step", value_vars=eff, var_name="check", value_name="efficacy").dropna()
        # a dash and a marker per check: two checks at the same value would hide each other
        sns.lineplot(data=e, x="step", y="efficacy", hue="check", style="check", markers=True, dashes=True, ax=axes[1])
        axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("efficacy (fixed forget subset)")
    for ax in axes:
        if ax.get_legend() is not None:
            ax.legend(fontsize=8, title=None)
    if title:
        _suptitle(fig, title, y=1.03)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------
# Chapters 5-7: simultaneous unlearning, interference, the leaderboard


def _errorbars(ax, x, y, lo, hi, color="0.2"):
    import numpy as np

    y, lo, hi = (np.asarray(v, dtype=float) for v in (y, lo, hi))
    ok = np.isfinite(lo) & np.isfinite(hi)
    if ok.any():
        ax.errorbar(
            np.asarray(x, dtype=float)[ok],
            y[ok],
            yerr=[(y - lo)[ok].clip(min=0), (hi - y)[ok].clip(min=0)],
            fmt="none",
            ecolor=color,
            elinewidth=1,
            capsize=2,
        )


def single_vs_both(svs: pd.DataFrame, title: str = ""):
    """Efficacy when a method forgets one concept (single target) and both at once, per
    concept, with 95 % item intervals: the frame of ``analysis.simultaneous_vs_single``.
    Each ``X+bgd`` method is drawn next to its base ``X`` (its single bar is ``X``'s)."""
    import numpy as np

    concepts = [c for c in ("person", "event") if c in set(svs["concept"])]
    fig, axes = _grid(len(concepts), PAGE_WIDTH_IN, 3.4, sharey=True)
    pal = sns.color_palette("deep")
    for ax, concept in zip(axes.flat, concepts):
        d = svs[svs["concept"] == concept].reset_index(drop=True)
        x = np.arange(len(d))
        w = 0.38
        ax.bar(x - w / 2, d["single"], w, color=pal[0], label="alone (single target)")
        _errorbars(ax, x - w / 2, d["single"], d["single_lo"], d["single_hi"])
        ax.bar(x + w / 2, d["both"], w, color=pal[3], label="together (target both)")
        _errorbars(ax, x + w / 2, d["both"], d["both_lo"], d["both_hi"])
        # room for every name: a dozen methods side by side ran their labels into each other
        ax.set_xticks(x, d["method"], rotation=90 if len(d) > 6 else 0)
        ax.set_ylim(0, 1.08)
        ax.set_ylabel("efficacy")
        ax.set_title(f"{concept} efficacy")
    fig.tight_layout()
    # below the panels, not over the bars (low efficacy bars sat under a lower-left legend)
    _legend_below(fig, *_all_handles(axes))
    if title:
        _suptitle(fig, title, y=1.02)
    return fig


def concept_trajectories(trajs: dict, title: str = ""):
    """Per-concept efficacy checks along unlearning (columns ``efficacy/person`` and
    ``efficacy/event`` of trajectory tables), one panel per concept, one line per run
    (``trajs`` maps a label such as ``"gd"`` or ``"gd+bgd (seed 1)"`` to its trajectory)."""
    rows = []
    for label, t in trajs.items():
        for c in ("person", "event"):
            col = f"efficacy/{c}"
            if col in t:
                d = t[["step", col]].dropna()
                rows.append(pd.DataFrame({"step": d["step"], "efficacy": d[col], "concept": c, "run": label}))
    fig, axes = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 3.2), sharey=True, squeeze=False)
    if rows:
        long = pd.concat(rows, ignore_index=True)
        runs = list(dict.fromkeys(long["run"]))
        for ax, c in zip(axes.flat, ("person", "event")):
            # a dash pattern and a marker per run as well as a colour: two runs that agree
            # (efficacy 1.0 from the first check on) would otherwise draw one line over the other
            sns.lineplot(
                data=long[long["concept"] == c],
                x="step",
                y="efficacy",
                hue="run",
                style="run",
                hue_order=runs,
                style_order=runs,
                markers=True,
                dashes=True,
                alpha=0.85,
                ax=ax,
            )
            ax.set_title(f"{c} efficacy (fixed forget subset)")
            ax.set_ylim(-0.02, 1.05)
            if ax.get_legend() is not None:
                ax.get_legend().remove()
    fig.tight_layout()
    if rows:
        _legend_below(fig, *_all_handles(axes))
    if title:
        _suptitle(fig, title, y=1.03)
    return fig


def lr_grid(grids: dict, title: str = ""):
    """The learning-rate grid of one method, one panel per target (``grids`` maps a target to
    :meth:`pebench_core.run.Run.tuning`'s table): the validation efficacy and retain of
    each concept against the rate (log scale), the criterion in black, the kept rate starred."""
    n = max(1, len(grids))
    fig, axes = _grid(n, 2.45, 3.0, sharey=True)
    colours = {"person": sns.color_palette()[0], "event": sns.color_palette()[3]}
    for ax, (target, g) in zip(axes.flat, grids.items()):
        g = g.sort_values("lr")
        for c in ("person", "event"):
            if f"efficacy/{c}" in g:
                ax.plot(g["lr"], g[f"efficacy/{c}"], "-o", color=colours[c], ms=4, label=f"{c} efficacy")
                ax.plot(g["lr"], g[f"retain/{c}"], "--s", color=colours[c], ms=4, label=f"{c} retain")
        ax.plot(g["lr"], g["criterion"], "-", color="black", lw=2, label="criterion")
        kept = g[g["kept"]]
        ax.plot(kept["lr"], kept["criterion"], "*", color="gold", mec="black", ms=15, label="kept", zorder=5)
        ax.set_xscale("log")
        # a tick at each rate of the grid and none between: log-axis minor labels collided
        rates = sorted(g["lr"].unique())
        ax.xaxis.set_major_locator(FixedLocator(rates))
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(rates, [f"{r:.0e}".replace("e-0", "e-") for r in rates])
        if len(rates) > 1:
            ax.set_xlim(rates[0] / 1.5, rates[-1] * 1.5)
        ax.set(xlabel="learning rate", title=f"target {target}", ylim=(-0.03, 1.05))
    axes.flat[0].set_ylabel("validation score")
    fig.tight_layout()
    _legend_below(fig, *_all_handles(axes))  # every panel's lines, once each (target both has both concepts)
    if title:
        _suptitle(fig, title, y=1.03)
    return fig


def bgd_balance(trajs: dict, max_weight: float | None = None, title: str = ""):
    """BGD's balancing step by step: left, each concept's weight (``weight/<c>`` of the
    trajectories), with the bounds ``[1/ρ, ρ]`` drawn when ``max_weight`` is given; right, the
    ratio of the event to the person forget-gradient norm before weighting
    (``grad_norm_ratio``, log scale; 1 is balanced). ``trajs`` maps a run label to its trajectory."""
    fig, (ax_w, ax_r) = plt.subplots(2, 1, figsize=(PAGE_WIDTH_IN, 5.6))
    palette = dict(zip(trajs, sns.color_palette(n_colors=max(1, len(trajs)))))
    for label, t in trajs.items():
        for c, style in (("person", "-"), ("event", "--")):
            if f"weight/{c}" in t:
                ax_w.plot(t["step"], t[f"weight/{c}"], style, color=palette[label], label=f"{label}: {c}")
        if "grad_norm_ratio" in t:
            ax_r.plot(t["step"], t["grad_norm_ratio"], color=palette[label], label=label)
    if max_weight is not None:
        for b in (max_weight, 1 / max_weight):
            ax_w.axhline(b, color="0.5", lw=0.8, ls=":")
    ax_w.set_yscale("log")
    ax_w.set(xlabel="", ylabel="weight $w_c$", title="each concept's weight (dotted: the bounds)")
    ax_r.axhline(1.0, color="0.5", lw=0.8, ls=":")
    ax_r.set_yscale("log")
    ax_r.set(xlabel="step", ylabel="$g_\\mathrm{event} / g_\\mathrm{person}$", title="gradient-norm ratio before weighting")
    fig.tight_layout()
    handles, labels = ax_w.get_legend_handles_labels()  # every run's two concepts (the ratio's lines share its colours)
    _legend_below(fig, handles, labels, fontsize=8)
    if title:
        _suptitle(fig, title, y=1.03)
    return fig


def _heatmap(
    ax,
    grid: pd.DataFrame,
    cmap: str,
    vmin: float,
    vmax: float,
    annot=True,
    fmt: str = ".2f",
    fontsize: float = MIN_FONT_PT,
    cbar: bool = True,
    cbar_label: str = "",
    linewidths: float = 0.4,
    square: bool = False,
):
    """A labelled heatmap of ``grid`` (rows top-down, a missing cell left blank), each cell
    annotated with its value (``annot=True``), with given strings (an array) or not at all.
    seaborn's heatmap draws the whole figure once per call to see whether its tick labels
    overlap, so a figure of 13 panels was drawn 13 times before it was shown."""
    import numpy as np
    from matplotlib import colors

    data = grid.to_numpy(dtype=float)
    norm = colors.Normalize(vmin=vmin, vmax=vmax)
    cm = plt.get_cmap(cmap)
    mesh = ax.pcolormesh(np.ma.masked_invalid(data), cmap=cm, norm=norm, edgecolors="white", linewidth=linewidths)
    n_rows, n_cols = data.shape
    ax.set_xlim(0, n_cols)
    ax.set_ylim(n_rows, 0)
    ax.set_xticks(np.arange(n_cols) + 0.5, [str(c) for c in grid.columns])
    ax.set_yticks(np.arange(n_rows) + 0.5, [str(i) for i in grid.index])
    ax.tick_params(length=0)
    ax.grid(False)
    for side in ax.spines.values():
        side.set_visible(False)
    if square:
        ax.set_aspect("equal")
    if annot is not False and annot is not None:
        labels = None if annot is True else np.asarray(annot, dtype=object)
        for i in range(n_rows):
            for j in range(n_cols):
                v = data[i, j]
                text = format(v, fmt) if labels is None else str(labels[i, j])
                if not np.isfinite(v) or not text:
                    continue
                r, g, b, _ = cm(norm(v))
                dark = 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.408  # light cell: dark text, as seaborn picks
                ax.text(j + 0.5, i + 0.5, text, ha="center", va="center", fontsize=fontsize, color="0.15" if dark else "white")
    if cbar:
        bar = ax.figure.colorbar(mesh, ax=ax)
        if cbar_label:
            bar.set_label(cbar_label)
    return mesh


def interference_heatmaps(matrices: dict, title: str = "", vmax: float = 1.0, ncols: int = 2):
    """Small multiples: one target × measured-concept heatmap per method (``matrices`` maps a
    method to ``analysis.interference_matrix``), cells = change against finetune, diverging
    colours centred on 0 (blue: more known than finetune, red: less)."""
    n = len(matrices)
    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(min(PAGE_WIDTH_IN, 3.4 * ncols), 2.8 * nrows), squeeze=False)
    for ax in axes.flat[n:]:
        ax.axis("off")
    for k, (ax, (method, m)) in enumerate(zip(axes.flat, matrices.items())):
        _heatmap(ax, m.astype(float), "RdBu", -vmax, vmax, fmt="+.2f", fontsize=8,
                 cbar=(k % ncols == ncols - 1 or k == n - 1), linewidths=0.5, square=True)  # fmt: skip
        ax.set_title(method, fontsize=10)
        ax.set_xlabel("measured concept" if k // ncols == nrows - 1 else "")
        ax.set_ylabel("target" if k % ncols == 0 else "")
        ax.tick_params(axis="y", rotation=0)
    if title:
        _suptitle(fig, title, y=1.02)
    fig.tight_layout()
    return fig


def paired_deltas(per_item: pd.DataFrame, title: str = ""):
    """Per-image change (method − finetune) of the *other* concept's score, on the forget
    images and on the retain images, one panel per direction (``per_item`` frame of
    ``analysis.paired_image_level``): a box per image set with every image as a dot."""
    dirs = list(dict.fromkeys(per_item["direction"]))
    fig, axes = _grid(len(dirs), 3.6, 3.2, sharey=True)
    for ax, d in zip(axes.flat, dirs):
        sub = per_item[per_item["direction"] == d]
        order = [x for x in ("forget", "retain") if x in set(sub["images"])]
        sns.boxplot(data=sub, x="images", y="delta", order=order, ax=ax, color="0.9", fliersize=0, width=0.5)
        sns.stripplot(
            data=sub,
            x="images",
            y="delta",
            order=order,
            ax=ax,
            hue="images",
            hue_order=order,
            palette="deep",
            size=4,
            jitter=0.2,
            alpha=0.7,
            legend=False,
        )
        ax.axhline(0, color="0.4", lw=0.8, ls="--")
        ax.set_title(d, fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("change against finetune")
    if title:
        _suptitle(fig, title, y=1.03)
    fig.tight_layout()
    return fig


def estimate_forest(
    frame: pd.DataFrame,
    label: str = "subject",
    value: str = "estimate",
    lo: str = "lo",
    hi: str = "hi",
    group: str | None = "finding",
    title: str = "",
    zero: float = 0.0,
):
    """A forest plot: one row per estimate with its interval, a line at ``zero`` (e.g. the
    sub-tests of ``analysis.finding_tests``; colour by ``verdict`` when the frame has one)."""
    import numpy as np

    d = frame.dropna(subset=[value]).reset_index(drop=True)
    labels = [f"{g}: {s}" if group else str(s) for g, s in zip(d[group] if group else d[label], d[label])]
    if "part" in d:  # several rows of one subject (e.g. finding 1): name the part too
        dup = pd.Series(labels).duplicated(keep=False).to_numpy()
        labels = [f"{lab} · {p}" if k else lab for lab, p, k in zip(labels, d["part"], dup)]
    height = max(2.0, 0.24 * len(d) + 0.8)  # inches of axes
    fig, ax = plt.subplots(figsize=(PAGE_WIDTH_IN, height + 0.9))
    y = np.arange(len(d))[::-1]
    colours = {
        "reproduced": "tab:green",
        "contradicted": "tab:red",
        "inconclusive": "0.5",
        "mixed": "tab:orange",
        "cannot test": "0.8",
    }
    c = [colours.get(v, "tab:blue") for v in d["verdict"]] if "verdict" in d else "tab:blue"
    lo_, hi_ = d[lo].to_numpy(dtype=float), d[hi].to_numpy(dtype=float)
    v = d[value].to_numpy(dtype=float)
    ok = np.isfinite(lo_) & np.isfinite(hi_)
    ax.hlines(y[ok], lo_[ok], hi_[ok], color="0.3", lw=1.2)
    ax.scatter(v, y, c=c, zorder=3, s=22)
    ax.axvline(zero, color="0.4", lw=0.8, ls="--")
    ax.set_yticks(y, labels, fontsize=MIN_FONT_PT)
    ax.set_ylim(-0.7, len(d) - 0.3)
    ax.set_xlabel("estimate (claim holds where the interval lies right of the dashed line)")
    # a tall forest: its axis at the top as well as the bottom, and its legend at the top, where the eye starts
    ax.tick_params(axis="x", top=True, labeltop=True)
    if "verdict" in d:
        from matplotlib.lines import Line2D

        seen = [k for k in colours if k in set(d["verdict"])]
        # above the top axis labels (a third of an inch): its own row, under the title
        ax.legend([Line2D([], [], marker="o", ls="", color=colours[k]) for k in seen], seen, fontsize=8,
                  loc="lower center", bbox_to_anchor=(0.5, 1.0 + 0.34 / height), ncol=len(seen),
                  frameon=False)  # fmt: skip
    if title:
        _fit(ax.set_title(title, pad=50 if "verdict" in d else 24), title)
    fig.tight_layout()
    return fig


# Where a point's label may go, in points from the point, nearest first.
_LABEL_OFFSETS = [(dx * r, dy * r) for r in (1, 2.2) for dx, dy in ((3, 2), (3, -8), (-3, 2), (-3, -8), (0, 5), (0, -11))]


def _label_points(ax, xs, ys, labels, colours) -> int:
    """Write each label beside its point where it overprints no other label and stays in the
    panel; a label with no free place is left out (the chapter's tables hold every number).
    Returns how many were written."""
    fig = ax.get_figure()
    renderer = fig.canvas.get_renderer()
    box = ax.get_window_extent(renderer)
    taken: list = []
    written = 0
    for x, y, label, colour in zip(xs, ys, labels, colours):
        for dx, dy in _LABEL_OFFSETS:
            ha = "left" if dx > 0 else ("right" if dx < 0 else "center")
            text = ax.annotate(label, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=MIN_FONT_PT,
                               color=colour, ha=ha, va="bottom")  # fmt: skip
            bb = text.get_window_extent(renderer)
            inside = bb.x0 >= box.x0 and bb.x1 <= box.x1 and bb.y0 >= box.y0 and bb.y1 <= box.y1
            if inside and not any(bb.overlaps(t) for t in taken):
                taken.append(bb)
                written += 1
                break
            text.remove()
    return written


def ours_vs_paper(side: pd.DataFrame, title: str = ""):
    """Our numbers (y) against the paper's (x), same scale and orientation, one panel per
    concept; colour = metric, circle = Table 1, cross = Table 2; filled where both numbers
    come from the same kind of measure, hollow where our event scorer stands in for the
    paper's G-Eval or ROUGE-L (frame of ``analysis.side_by_side``). A point is named by its
    method where the name overprints no other (:func:`_label_points`)."""
    from matplotlib.lines import Line2D

    d = side.dropna(subset=["ours", "paper"])
    concepts = [c for c in ("person", "event") if c in set(d["concept"])]
    metrics = [m for m in paper_metric_order() if m in set(d["metric"])]
    colour = dict(zip(metrics, sns.color_palette("deep", len(metrics))))
    marker = {"Table 1": "o", "Table 2": "s"}
    fig, axes = _grid(len(concepts), 3.7, 3.9)
    for ax, c in zip(axes.flat, concepts):
        sub = d[d["concept"] == c]
        for (metric, table, same), g in sub.groupby(["metric", "table", "same_measure"]):
            col = colour[metric]
            ax.scatter(
                g["paper"],
                g["ours"],
                s=42,
                marker=marker.get(table, "o"),
                edgecolors=[col],
                facecolors=[col] if same else "none",
                linewidths=1.4,
                zorder=3,
            )
        ax.plot([0, 1], [0, 1], color="0.5", lw=0.8, ls="--")
        ax.set_xlim(-0.04, 1.04)
        ax.set_ylim(-0.04, 1.04)
        ax.set_title(f"{c} columns")
        ax.set_xlabel("paper")
        ax.set_ylabel("ours")
    handles = [Line2D([], [], marker="o", ls="", color=colour[m], label=m) for m in metrics]
    handles += [Line2D([], [], marker=mk, ls="", color="0.3", label=t) for t, mk in marker.items() if t in set(d["table"])]
    handles += [Line2D([], [], marker="o", ls="", markerfacecolor="none", markeredgecolor="0.3", label="different measure")]
    fig.tight_layout()
    _legend_below(fig, handles, [h.get_label() for h in handles], fontsize=8)
    if title:
        _suptitle(fig, title, y=1.02)
    # colour is the metric, so a point's method is written beside it where the name fits;
    # placed last, once the panels have their final size
    for ax, c in zip(axes.flat, concepts):
        points = d[d["concept"] == c].sort_values(["paper", "ours"])
        _label_points(ax, points["paper"], points["ours"], points["method"], [colour[m] for m in points["metric"]])
    return fig


# =======================================================================================
# Robustness probes (chapter "Is it really forgotten?")
def _panels(frame: pd.DataFrame) -> list[tuple[str, str]]:
    order = {"person": 0, "event": 1, "both": 2}
    pairs = frame[["target", "concept"]].drop_duplicates().itertuples(index=False)
    return sorted(((t, c) for t, c in pairs), key=lambda p: (order.get(p[0], 9), p[1] != "person"))


def _line_style(model: str, palette: dict) -> dict:
    """The goal model black and dashed, the fine-tuned model grey and dotted, a method its colour."""
    if model == "goal":
        return {"color": "black", "ls": "--", "lw": 2.2, "zorder": 5}
    if model == "finetune":
        return {"color": "0.55", "ls": ":", "lw": 2.0, "zorder": 4}
    colour, dash = palette.get(model, ("tab:blue", "-"))
    return {"lw": 1.4, "alpha": 0.9, "color": colour, "ls": dash}


_DASHES = ("-", "--", "-.", (0, (1, 1)))


def _method_palette(models: Sequence[str]) -> dict:
    """A colour a reader can tell apart per method (tab10's ten, then again with another dash):
    tab20's pairs of light and dark shades were near-identical at line width."""
    methods = [m for m in models if m not in ("finetune", "goal")]
    return {m: (sns.color_palette("tab10", 10)[k % 10], _DASHES[(k // 10) % len(_DASHES)]) for k, m in enumerate(methods)}


def _legend_right(fig, axes, ylabel: str, title: str):
    """One y label for every row (a long one ran into the next row's), one legend of every
    panel's lines below them, the title."""
    fig.supylabel(ylabel, fontsize=11)
    fig.tight_layout()
    _legend_below(fig, *_all_handles(axes), fontsize=8)
    if title:
        _suptitle(fig, title, y=1.02)
    return fig


def relearn_curves(curves: pd.DataFrame, models: Sequence[str] | None = None, title: str = ""):
    """Efficacy on the held-back forget images against relearning steps (``curves`` from
    ``analysis.relearn_curves``): one panel per (target, concept), one line per method, the goal
    model (black, dashed: learning from scratch) and the fine-tuned model (grey, dotted). A
    method whose line falls below the goal's relearns faster than a model that never knew."""
    panels = _panels(curves)
    fig, axes = _grid(len(panels), 3.7, 3.0, sharey=True)
    models = [m for m in (models or dict.fromkeys(curves["method"])) if m in set(curves["method"])]
    palette = _method_palette(models)
    for ax, (t, c) in zip(axes.flat, panels):
        sub = curves[(curves["target"] == t) & (curves["concept"] == c)]
        for m in models:
            g = sub[sub["method"] == m].sort_values("steps")
            if g.empty:
                continue
            ax.plot(g["steps"], g["mean"], marker="o", ms=3, label=m, **_line_style(m, palette))
        ax.set_title(f"target {t} · {c}", fontsize=10)
        ax.set_xlabel("relearning steps")
        ax.set_ylim(-0.03, 1.03)
    return _legend_right(fig, axes, "efficacy (held-back forget images)", title)


def probe_heatmap(summary: pd.DataFrame, measures: Sequence[str], models: Sequence[str], title: str = "", fmt: str = ".2f"):
    """One heatmap per (target, concept): models (rows) × probe measures (columns), the cell the
    mean over items (annotated). ``measures`` in column order; a missing cell stays blank."""
    s = summary[summary["metric"].isin(list(measures))]
    panels = _panels(s)
    ncols = 1 if 0.62 * len(measures) * 2 + 3.2 > PAGE_WIDTH_IN else min(2, max(1, len(panels)))
    nrows = -(-len(panels) // ncols)
    width = min(PAGE_WIDTH_IN, (0.62 * len(measures) + 2.6) * ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width, (0.3 * len(models) + 1.5) * nrows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for k, (ax, (t, c)) in enumerate(zip(axes.flat, panels)):
        sub = s[(s["target"] == t) & (s["concept"] == c)]
        grid = sub.pivot_table(index="method", columns="metric", values="mean", sort=False)
        grid = grid.reindex(index=[m for m in models if m in grid.index], columns=[m for m in measures if m in grid.columns])
        _heatmap(ax, grid, "viridis", 0, 1, fmt=fmt, cbar=k % ncols == ncols - 1 or k == len(panels) - 1)
        ax.set_title(f"target {t} · {c}", fontsize=10)
        ax.set_xlabel("")
        ax.set_ylabel("")
        ax.tick_params(axis="x", rotation=90, labelsize=8)  # upright, the column names ran into each other
        ax.tick_params(axis="y", rotation=0, labelsize=8)
    if title:
        _suptitle(fig, title, y=1.01)
    fig.tight_layout()
    return fig


def mia_auc(summary: pd.DataFrame, models: Sequence[str], title: str = ""):
    """The membership-inference AUC (forget items against never-seen ones) of every model, by the
    loss and by Min-K%, with intervals; the goal model's AUC is the line to reach (a dashed line
    marks 0.5, a coin toss)."""
    s = summary[summary["metric"].isin(["mia_loss", "mia_mink"])]
    panels = _panels(s)
    fig, axes = _grid(len(panels), 3.7, 0.26 * len(models) + 1.6, sharey=True)
    for ax, (t, c) in zip(axes.flat, panels):
        sub = s[(s["target"] == t) & (s["concept"] == c)]
        order = [m for m in models if m in set(sub["method"])]
        for j, (metric, colour) in enumerate((("mia_loss", "tab:blue"), ("mia_mink", "tab:orange"))):
            g = sub[sub["metric"] == metric].set_index("method").reindex(order)
            y = [i + (j - 0.5) * 0.3 for i in range(len(order))]
            ax.errorbar(g["mean"], y, xerr=[g["mean"] - g["ci_lo"], g["ci_hi"] - g["mean"]], fmt="o", ms=3.5,
                        color=colour, lw=1, label="loss" if metric == "mia_loss" else "Min-K%")  # fmt: skip
            if "goal" in g.index:
                ax.axvline(g.loc["goal", "mean"], color=colour, ls="--", lw=0.9)
        ax.axvline(0.5, color="0.4", lw=0.8, ls=":")
        ax.set_yticks(range(len(order)), order, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlim(-0.03, 1.03)
        ax.set_xlabel("AUC, forget vs never-seen")
        ax.set_title(f"target {t} · {c}", fontsize=10)
    fig.tight_layout()
    _legend_below(fig, *_all_handles(axes), title="score (dashed: goal)", fontsize=8)
    if title:
        _suptitle(fig, title, y=1.02)
    return fig


def probe_sites(summary: pd.DataFrame, models: Sequence[str], chance: dict | None = None, title: str = ""):
    """Linear-probe accuracy at the vision tower, the projector and the middle language-model
    layer, one line per model and one panel per (target, concept): "stops saying" against
    "stops knowing". ``chance`` maps (target, concept) to the chance accuracy (dotted)."""
    sites = ["probe_tower", "probe_projector", "probe_lm"]
    s = summary[summary["metric"].isin(sites)]
    panels = _panels(s)
    fig, axes = _grid(len(panels), 3.7, 3.0, sharey=True)
    palette = _method_palette(models)
    for ax, (t, c) in zip(axes.flat, panels):
        sub = s[(s["target"] == t) & (s["concept"] == c)]
        for m in models:
            g = sub[sub["method"] == m].set_index("metric").reindex(sites)
            if g["mean"].isna().all():
                continue
            ax.plot(range(3), g["mean"], marker="o", ms=3, label=m, **_line_style(m, palette))
        if chance and (t, c) in chance:
            ax.axhline(chance[(t, c)], color="0.4", ls=":", lw=0.8)
        ax.set_xticks(range(3), ["tower", "projector", "LM layer"])
        ax.set_ylim(-0.03, 1.03)
        ax.set_title(f"target {t} · {c}", fontsize=10)
    return _legend_right(fig, axes, "probe accuracy (held-out renders)", title)


def survival_heatmap(surv: pd.DataFrame, title: str = ""):
    """The recovery d of every method × probe measure (``analysis.survival``), one row per
    (target, concept, method): red where knowledge comes back, blue where the probe finds less
    than its reference; each cell is marked with its verdict (H holds, B breaks, ? inconclusive,
    – cannot test)."""
    import numpy as np

    d = surv.assign(row=surv["target"] + " · " + surv["concept"] + " · " + surv["method"])
    rows = list(dict.fromkeys(d["row"]))
    cols = list(dict.fromkeys(d["measure"]))
    grid = d.pivot_table(index="row", columns="measure", values="d", sort=False).reindex(index=rows, columns=cols)
    marks = {"holds": "H", "breaks": "B", "inconclusive": "?", "cannot test": "–"}
    text = d.pivot_table(index="row", columns="measure", values="verdict", aggfunc="first", sort=False).reindex(
        index=rows, columns=cols
    )
    annot = np.vectorize(lambda v: marks.get(v, "") if isinstance(v, str) else "")(text.to_numpy(dtype=object))
    fig, ax = plt.subplots(figsize=(min(PAGE_WIDTH_IN, 0.42 * len(cols) + 3.4), 0.21 * len(rows) + 1.6))
    _heatmap(ax, grid, "RdBu_r", -1, 1, annot=annot, linewidths=0.3, cbar_label="recovery d (knowledge back >0)")
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.tick_params(axis="x", rotation=90, labelsize=MIN_FONT_PT)
    ax.tick_params(axis="y", labelsize=MIN_FONT_PT)
    if title:
        _fit(ax.set_title(title), title)
    fig.tight_layout()
    return fig
