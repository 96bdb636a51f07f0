"""Figures of the fusion stage (notebook 05): the training curve and the attention per region on the city map.
matplotlib is imported inside each function, so importing `musecl.fusion` stays possible without it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from musecl.contract import REGION_ID

if TYPE_CHECKING:
    import matplotlib.figure

    from musecl.data import CityBundle


def plot_training_curve(history: pd.DataFrame, title: str = "") -> "matplotlib.figure.Figure":
    """Alignment loss per epoch."""
    import matplotlib.pyplot as plt

    from matplotlib.ticker import MaxNLocator

    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    if len(history):
        ax.plot(history["epoch"] + 1, history["loss"], marker="o", markersize=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        losses = history["loss"].to_numpy()
        if losses.min() > 0 and losses.max() / losses.min() > 100:  # spans orders of magnitude
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no training (loss: none)", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("epoch")
    ax.set_ylabel("alignment loss (mean over batches)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_attention(attention: pd.DataFrame, bundle: "CityBundle") -> "matplotlib.figure.Figure":
    """The weight on street view per region on the city map (fixed 0-1 scale: red = street view dominates, blue =
    remote sensing dominates), beside its histogram over regions."""
    import matplotlib.pyplot as plt

    regions = bundle.regions().set_index(REGION_ID).join(attention[["alpha_sv"]], how="inner")
    fig, (ax_map, ax_hist) = plt.subplots(1, 2, figsize=(10.0, 4.2), gridspec_kw={"width_ratios": [1.2, 1.0]})
    regions.plot(column="alpha_sv", ax=ax_map, cmap="coolwarm", vmin=0.0, vmax=1.0, legend=True, linewidth=0.1,
                 edgecolor="white", legend_kwds={"shrink": 0.7, "label": "α_SV (weight on street view)"})
    bundle.boundary().boundary.plot(ax=ax_map, color="black", linewidth=0.6)
    ax_map.set_axis_off()
    ax_map.set_title("Attention per region")
    ax_hist.hist(attention["alpha_sv"], bins=30, range=(0.0, 1.0), color="grey")
    ax_hist.axvline(0.5, color="black", linewidth=0.8, linestyle="--")
    ax_hist.set_xlabel("α_SV = 1 − α_RS")
    ax_hist.set_ylabel("regions")
    ax_hist.set_title(f"mean {attention['alpha_sv'].mean():.3f}, std {attention['alpha_sv'].std(ddof=0):.3f}")
    fig.tight_layout()
    return fig
