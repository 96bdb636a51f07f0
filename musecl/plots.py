"""Figures shared by the notebooks: region maps, image samples, correlation heatmaps, and the one colour of each method
(`method_colors`). Saving goes through `save_figure`."""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID
from musecl.storage import atomic_path

if TYPE_CHECKING:
    import matplotlib.figure

    from musecl.data import CityBundle

LAND_USE_LATENTS = ("commercial", "residential", "green", "water")

# One fixed colour per representation, the same in every figure (R² panels, ablation panels, any later figure that
# colours methods): ours red, its variants in reds and browns, the references (ceiling and floors) grey, the image
# baselines blue/green, the image-text models and their ablations purple. Names are evaluation.representations' keys.
METHOD_COLORS: dict[str, str] = {
    "MuseCL": "#d62728",
    "MuseCL+text": "#ff9896", "MuseCL-InfoNCE": "#e377c2", "MuseCL w/o POI pairs": "#f7b6d2",
    "MuseCL w/o mobility pairs": "#c49c94", "MuseCL global attention": "#8c564b", "MuseCL L2 inputs": "#ad494a",
    "Concat-svrv": "#e7969c",
    "SV ImageNet (Lite0)": "#1f77b4", "RS ImageNet (Lite0)": "#aec7e8", "Tile2Vec": "#2ca02c", "Urban2Vec": "#98df8a",
    "PG-SimCLR": "#9467bd", "Fusion-svrv": "#ff7f0e", "RS": "#17becf", "SV": "#9edae5", "POI-text": "#bcbd22",
    "Add-svrv": "#ffbb78", "Concat": "#c5b0d5", "POI-counts": "#dbdb8d",
    "UrbanCLIP": "#393b79", "UrbanLN+SI": "#6b6ecf", "UrbanLN+SV": "#5254a3",
    "UrbanLN+SV w/o IPSI": "#756bb1", "UrbanLN+SV w/o MSD": "#9e9ac8", "UrbanLN+SV w/o consensus": "#bcbddc",
    "UrbanLN+SV w/o refinement": "#dadaeb",
    "Oracle": "#252525", "Pixel stats RS": "#737373", "Pixel stats SV": "#bdbdbd",
}
OURS_COLOR = "#d62728"
REFERENCE_GREYS = ("#525252", "#969696", "#d9d9d9", "#3a3a3a", "#aaaaaa")
OTHER_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#aec7e8",
                "#ffbb78", "#98df8a", "#c5b0d5", "#c49c94", "#f7b6d2", "#dbdb8d", "#9edae5")


def method_color(method: str, role: str | None = None) -> str:
    """The colour of one method: :data:`METHOD_COLORS`, else by role (ours red, a reference grey, any other from a
    fixed palette), chosen from the name alone (CRC32) so that it never depends on which other methods are drawn."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    if role == "ours":
        return OURS_COLOR
    palette = REFERENCE_GREYS if role == "reference" else OTHER_COLORS
    return palette[zlib.crc32(method.encode()) % len(palette)]


def method_colors(methods: Sequence[str], roles: Mapping[str, str] | None = None) -> dict[str, str]:
    """`{method: colour}` for the methods of a figure (see :func:`method_color`)."""
    roles = roles or {}
    return {m: method_color(m, roles.get(m)) for m in methods}


def save_figure(fig: "matplotlib.figure.Figure", path: str | Path, dpi: int = 110) -> Path:
    """Save a figure atomically as PNG (metadata stripped so identical figures give identical bytes)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight", metadata={"Software": None})
    return path


def region_maps(
    bundle: "CityBundle", values: pd.DataFrame, ncols: int = 3, cmap: str = "viridis", title: str | None = None
) -> "matplotlib.figure.Figure":
    """One map per column of `values` (indexed by region id): the regions coloured by the value, with the boundary."""
    import matplotlib.pyplot as plt

    regions = bundle.regions().set_index(REGION_ID)
    boundary = bundle.boundary()
    columns = list(values.columns)
    nrows = int(np.ceil(len(columns) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax, column in zip(axes.flat, columns):
        frame = regions.join(values[[column]], how="inner")
        frame.plot(column=column, ax=ax, cmap=cmap, legend=True, linewidth=0.1, edgecolor="white",
                   legend_kwds={"shrink": 0.7})
        boundary.boundary.plot(ax=ax, color="black", linewidth=0.6)
        ax.set_title(column)
        ax.set_axis_off()
    for ax in list(axes.flat)[len(columns):]:
        ax.set_axis_off()
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def land_use_examples(bundle: "CityBundle", n_street_views: int = 3) -> "matplotlib.figure.Figure":
    """For each land-use type, the region where that latent dominates most: its tile and a few street views."""
    import matplotlib.pyplot as plt

    from musecl.data.regions import assign_points_to_regions

    latents = bundle.latents()
    if latents is None:
        raise ValueError(f"{bundle.root}: no latents table; land-use examples need a synthetic city")
    types = [t for t in LAND_USE_LATENTS if t in latents.columns]
    share = latents[types].div(latents[types].sum(axis=1) + 1e-9, axis=0)
    rs = bundle.remote_sensing().set_index(REGION_ID)
    sv = bundle.street_view()
    sv[REGION_ID] = assign_points_to_regions(sv["lon"], sv["lat"], latents.index, bundle.h3_resolution)
    fig, axes = plt.subplots(len(types), 1 + n_street_views, figsize=(2.6 * (1 + n_street_views), 2.6 * len(types)),
                             squeeze=False)
    for row, land_use in zip(axes, types):
        region = share[land_use].idxmax()
        tiles = rs.loc[[region], "path"]
        row[0].imshow(bundle.image(tiles.iloc[0]))
        row[0].set_title(f"{land_use}\nremote sensing", fontsize=9)
        views = sv.loc[sv[REGION_ID] == region, "path"].head(n_street_views).tolist()
        for ax, path in zip(row[1:], views):
            ax.imshow(bundle.image(path))
            ax.set_title("street view", fontsize=9)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in row[1 + len(views):]:  # regions with fewer street views than columns
            ax.set_axis_off()
    fig.tight_layout()
    return fig


def correlation_heatmap(table: pd.DataFrame, title: str = "") -> "matplotlib.figure.Figure":
    """Pearson correlations between the columns of `table`, annotated."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * table.shape[1], 0.8 + 0.7 * table.shape[1]))
    sns.heatmap(table.corr(), annot=True, fmt=".2f", vmin=-1, vmax=1, cmap="RdBu_r", ax=ax, square=True)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def write_table(table: pd.DataFrame, path_stem: str | Path, float_format: str = "{:.4g}") -> tuple[Path, Path]:
    """Write a table as Markdown (`.md`) and LaTeX (`.tex`) next to each other, atomically."""
    path_stem = Path(path_stem)
    formatted = table.map(lambda v: float_format.format(v) if isinstance(v, (float, np.floating)) else v)
    md, tex = path_stem.with_suffix(".md"), path_stem.with_suffix(".tex")
    with atomic_path(md) as tmp:
        tmp.write_text(formatted.to_markdown() + "\n")
    with atomic_path(tex) as tmp:
        tmp.write_text(formatted.to_latex(escape=True) + "\n")
    return md, tex
