"""The book's figures, one function per kind of figure (seaborn on matplotlib).

Each function returns the matplotlib Figure so a chapter can show it, save it or tweak it.
"""

from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns

sns.set_theme(context="notebook", style="whitegrid")


def image_grid(images: Sequence, titles: Sequence[str] | None = None, ncols: int = 8,
               size: float = 1.6, title: str | None = None, fontsize: int = 7):
    """A grid of images with a small caption under each."""
    n = len(images)
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * (size + 0.25)), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(images[k], interpolation="nearest")
            if titles is not None:
                ax.set_title(titles[k], fontsize=fontsize, pad=2)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def count_bars(df: pd.DataFrame, column: str, hue: str | None = None, title: str = "", ax=None,
               order: Sequence[str] | None = None, horizontal: bool = True):
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
    ax.set_title(title)
    return ax.figure


METRIC_ORDER = ["efficacy", "generality", "retain", "scope", "real", "world_fact"]


def metric_bars(df: pd.DataFrame, title: str = "", hue_order: Sequence[str] | None = None):
    """Grouped bars of a results frame (columns concept, metric, method, value): one panel per
    concept, the six metrics side by side, one bar per model. Higher is better everywhere."""
    concepts = [c for c in ("person", "event") if c in set(df["concept"])]
    fig, axes = plt.subplots(1, len(concepts), figsize=(6.5 * len(concepts), 3.6), squeeze=False)
    for ax, concept in zip(axes.flat, concepts):
        d = df[df["concept"] == concept]
        sns.barplot(data=d, x="metric", y="value", hue="method", order=[m for m in METRIC_ORDER if m in set(d["metric"])],
                    hue_order=hue_order, ax=ax, errorbar=None)
        ax.set_ylim(0, 1.05)
        ax.set_title(f"{concept} unlearning" if concept else "")
        ax.set_xlabel("")
        ax.legend(fontsize=8, loc="lower left")
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def trajectory(traj: pd.DataFrame, title: str = ""):
    """Forget and retain losses per step (left) and the efficacy checks (right)."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4))
    loss_cols = [c for c in ("forget_loss", "retain_loss", "loss") if c in traj]
    long = traj.melt(id_vars="step", value_vars=loss_cols, var_name="term", value_name="value").dropna()
    sns.lineplot(data=long, x="step", y="value", hue="term", ax=axes[0])
    axes[0].set_title("loss terms")
    eff = [c for c in traj.columns if c.startswith("efficacy/")]
    if eff:
        e = traj.melt(id_vars="step", value_vars=eff, var_name="check", value_name="efficacy").dropna()
        sns.lineplot(data=e, x="step", y="efficacy", hue="check", marker="o", ax=axes[1])
        axes[1].set_ylim(-0.02, 1.02)
    axes[1].set_title("efficacy on a fixed forget subset")
    if title:
        fig.suptitle(title, y=1.03)
    fig.tight_layout()
    return fig
