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
