"""Figures of a built city: where each kind of data lies, and sample images (used by notebooks/01b_build_city)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    import matplotlib.figure

    from musecl.data import CityBundle


def input_inventory(folder: str | Path) -> pd.DataFrame:
    """The input files of a build folder: one row per file (folders of many files summarised as one row)."""
    folder = Path(folder)
    rows = []
    for path in sorted(folder.iterdir()):
        if path.is_file():
            rows.append({"input": path.name, "files": 1, "MB": path.stat().st_size / 1e6})
        elif path.is_dir():
            files = [f for f in path.rglob("*") if f.is_file()]
            rows.append({"input": f"{path.name}/", "files": len(files), "MB": sum(f.stat().st_size for f in files) / 1e6})
    return pd.DataFrame(rows).set_index("input")


def data_overview(bundle: "CityBundle", max_points: int = 5_000, seed: int = 0) -> "matplotlib.figure.Figure":
    """Maps of the built city, one per point layer it has: POIs, trip origins, taxi GPS fixes, street-view cameras."""
    import matplotlib.pyplot as plt

    regions = bundle.regions()
    boundary = bundle.boundary()
    rng = np.random.default_rng(seed)

    def sample(frame: pd.DataFrame) -> pd.DataFrame:
        return frame if len(frame) <= max_points else frame.iloc[np.sort(rng.choice(len(frame), max_points, False))]

    layers = [("POIs", bundle.pois(), "lon", "lat", "tab:red")] if bundle.has("pois") else []
    trips = bundle.trips()
    if trips is not None:
        layers.append(("trip origins", trips, "origin_lon", "origin_lat", "tab:blue"))
    traj = bundle.trajectories()
    if traj is not None:
        layers.append(("taxi GPS fixes", traj, "lon", "lat", "tab:purple"))
    layers.append(("street-view cameras", bundle.street_view(), "lon", "lat", "tab:green"))
    fig, axes = plt.subplots(1, len(layers), figsize=(4.0 * len(layers), 4.2), squeeze=False)
    for ax, (title, frame, lon, lat, colour) in zip(axes[0], layers):
        regions.boundary.plot(ax=ax, color="0.75", linewidth=0.4)
        boundary.boundary.plot(ax=ax, color="black", linewidth=0.8)
        shown = sample(frame)
        ax.scatter(shown[lon], shown[lat], s=3, color=colour, alpha=0.6, linewidths=0)
        ax.set_title(f"{title} ({len(frame):,})")
        ax.set_axis_off()
        ax.set_aspect(1 / np.cos(np.radians(regions["lat"].mean())))
    fig.tight_layout()
    return fig


def image_samples(bundle: "CityBundle", n_regions: int = 4, n_views: int = 4) -> "matplotlib.figure.Figure":
    """For a few regions (spread over the city): the remote-sensing tile and street views taken inside it."""
    import matplotlib.pyplot as plt

    from musecl.data.regions import assign_points_to_regions
    from musecl.data.schema import REGION_ID

    rs = bundle.remote_sensing().set_index(REGION_ID)
    sv = bundle.street_view()
    regions = bundle.regions().sort_values(REGION_ID)
    sv[REGION_ID] = assign_points_to_regions(sv["lon"].to_numpy(), sv["lat"].to_numpy(), regions[REGION_ID],
                                             bundle.h3_resolution)
    picks = regions[REGION_ID].iloc[np.linspace(0, len(regions) - 1, n_regions).round().astype(int)]
    fig, axes = plt.subplots(n_regions, 1 + n_views, figsize=(2.2 * (1 + n_views), 2.3 * n_regions), squeeze=False)
    for row, region in zip(axes, picks):
        row[0].imshow(bundle.image(rs.loc[region, "path"]))
        row[0].set_title(f"{region}\nremote sensing", fontsize=8)
        views = sv[sv[REGION_ID] == region].head(n_views)
        for ax, (_, view) in zip(row[1:], views.iterrows()):
            ax.imshow(bundle.image(view["path"]))
            heading = f"{view['heading']:.0f}°" if "heading" in view and pd.notna(view["heading"]) else ""
            ax.set_title(f"street view {heading}", fontsize=8)
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig
