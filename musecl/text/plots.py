"""Figures of the `poi_text` stage: a 2-D projection of the region text vectors, coloured by an indicator."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import matplotlib.figure


def select_indicator(indicators: pd.DataFrame, name: str) -> pd.Series:
    """The indicator column that colours a figure, with an error naming the parameter and the choices."""
    if name not in indicators.columns:
        raise KeyError(f"poi_text.figures.color_by: {name!r} is not an indicator of this city "
                       f"(available: {list(indicators.columns)})")
    return indicators[name]


def project_embeddings(table: pd.DataFrame, method: str = "pca", seed: int = 0) -> pd.DataFrame:
    """2-D coordinates (`x`, `y`) of an embedding table by PCA or t-SNE (sklearn), same index."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    values = table.to_numpy(dtype=np.float64)
    if method == "pca":
        coords = PCA(n_components=2, random_state=seed % 2**32).fit_transform(values)
    elif method == "tsne":
        perplexity = float(min(30.0, max(2.0, (len(values) - 1) / 3)))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed % 2**32).fit_transform(
            values
        )
    else:
        raise ValueError(f"poi_text.figures.projection is {method!r}; expected 'pca' or 'tsne'")
    return pd.DataFrame(coords, index=table.index, columns=["x", "y"])


def plot_projection(
    coords: pd.DataFrame, values: pd.Series, title: str = "", empty: pd.Series | None = None
) -> "matplotlib.figure.Figure":
    """Scatter of 2-D coordinates coloured by `values` (aligned on the index); `empty` regions drawn as crosses."""
    import matplotlib.pyplot as plt

    frame = coords.join(values.rename("value"), how="inner")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    mask = np.zeros(len(frame), dtype=bool) if empty is None else empty.reindex(frame.index).fillna(False).to_numpy()
    points = ax.scatter(frame["x"][~mask], frame["y"][~mask], c=frame["value"][~mask], cmap="viridis", s=18)
    if mask.any():
        ax.scatter(frame["x"][mask], frame["y"][mask], marker="x", color="grey", s=18,
                   label=f"no in-vocabulary token ({int(mask.sum())})")
        ax.legend(loc="best", fontsize=8)
    fig.colorbar(points, ax=ax, label=str(values.name))
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title(title)
    fig.tight_layout()
    return fig
