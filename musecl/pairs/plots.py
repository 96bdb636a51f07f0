"""Figures of the `pairs` stage (notebook 02): mobility maps, similarity distributions, positive-vs-random shares and
example triplets. matplotlib is imported inside each function, so importing `musecl.pairs` stays light.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from musecl.pairs.triplets import TripletSet

if TYPE_CHECKING:
    import matplotlib.figure

# Panel titles of the two similarities, by indicator source (in the order of `region_indicator_tables`)
SIMILARITY_LABELS = {"mobility": "λ^PM (mobility)", "poi": "λ^POI (POI mix)"}


def plot_mobility_maps(bundle, mobility: pd.DataFrame) -> "matplotlib.figure.Figure":
    """Inflow and outflow per region on the city map, on a log(1 + count) scale."""
    from musecl.plots import region_maps

    return region_maps(bundle, np.log1p(mobility).rename(columns=lambda c: f"log(1 + {c})"), ncols=2)


def plot_similarity_distributions(similarities: dict[str, np.ndarray], pair_sims: dict[str, pd.DataFrame]):
    """One panel per similarity: histogram of all region pairs vs the chosen positive pairs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(similarities), figsize=(5.2 * len(similarities), 3.6), squeeze=False)
    for ax, (name, sim) in zip(axes[0], similarities.items()):
        upper = sim[np.triu_indices(sim.shape[0], k=1)]
        bins = np.linspace(np.nanmin(upper), np.nanmax(upper), 41)
        ax.hist(upper, bins=bins, density=True, alpha=0.55, label="all region pairs")
        if name in pair_sims:
            ax.hist(pair_sims[name]["positive"], bins=bins, density=True, alpha=0.55, label="anchor-positive pairs")
        ax.set_title(name)
        ax.set_xlabel("similarity λ")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_source_similarities(similarities: dict[str, np.ndarray], pair_sims: dict[str, pd.DataFrame]):
    """`plot_similarity_distributions` of the stage's λ per indicator source (`region_similarities`) with the positive
    pairs of `positive_pair_similarities`, titled by `SIMILARITY_LABELS`."""
    return plot_similarity_distributions(
        {SIMILARITY_LABELS.get(name, name): sim for name, sim in similarities.items()},
        {SIMILARITY_LABELS.get(name, name): sims for name, sims in pair_sims.items()},
    )


def plot_indicator_agreement(checks: dict[str, pd.DataFrame]):
    """Share of triplets whose positive is closer to the anchor than a random region, per indicator and modality."""
    import matplotlib.pyplot as plt

    table = pd.DataFrame({name: check["positive_closer_share"] for name, check in checks.items()})
    fig, ax = plt.subplots(figsize=(1.1 * len(table) + 3, 3.6))
    table.plot.bar(ax=ax, rot=30)
    ax.axhline(0.5, color="black", lw=1, ls="--", label="random (0.5)")
    ax.set_ylabel("P(positive closer than random)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_triplet_examples(bundle, ts: TripletSet, n: int = 4, title: str = ""):
    """The first `n` training triplets as images: anchor | positive | negative, with their regions."""
    import matplotlib.pyplot as plt

    paths = ts.images.set_index("image_id")["path"]
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.3 * n), squeeze=False)
    for row, (_, t) in zip(axes, ts.train.head(n).iterrows()):
        for ax, role in zip(row, ("anchor", "positive", "negative")):
            ax.imshow(bundle.image(paths[t[f"{role}_image"]]))
            ax.set_title(f"{role}\n{t[f'{role}_region']}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
