"""Where a synthetic city's images are taken: street-view camera points on the street grid and remote-sensing tiles
(several per region, like the tiles of a fixed imagery grid that overlap a hexagon), as the image index tables.

Both are drawn from their own random streams (component codes in `musecl.synthetic.generate`), so changing the number
of tiles never moves a street-view camera and vice versa.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.data import schema
from musecl.data.schema import REGION_ID
from musecl.synthetic.frame import CityFrame, RegionSampler
from musecl.synthetic.presets import SyntheticCityConfig


def street_view_points(
    config: SyntheticCityConfig,
    frame: CityFrame,
    latents: pd.DataFrame,
    sampler: RegionSampler,
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Street-view camera points on the street grid: more in built-up regions (denser streets), at least one per region.

    Count per region: 1 + Poisson((sv_per_region - 1) * w / mean(w)), w = land * (0.1 + mean(residential, commercial)).
    Heading: along or across the street (a panorama cut into 4 views), jittered by N(0, 4) degrees.
    """
    land = latents["land_fraction"].to_numpy(dtype=np.float64)
    built = 0.5 * (latents["residential"].to_numpy() + latents["commercial"].to_numpy())
    w = np.maximum(land, 0.05) * (0.1 + built)
    lam = (config.sv_per_region - 1.0) * w / w.mean()
    counts = 1 + rng.poisson(lam)
    region_idx = np.repeat(np.arange(len(latents)), counts)
    spacing = config.street_spacing_m / 1000.0
    c, s = np.cos(frame.street_angle), np.sin(frame.street_angle)
    bearing_u = np.degrees(np.pi / 2 - frame.street_angle)  # compass bearing of the grid's u axis
    bearing_v = bearing_u - 90.0

    def snap(x, y, g):
        u = x * c + y * s
        v = -x * s + y * c
        on_u_street = g.random(x.shape) < 0.5  # the camera stands on a street running along u (v snapped) or along v
        v = np.where(on_u_street, np.round(v / spacing) * spacing, v)
        u = np.where(on_u_street, u, np.round(u / spacing) * spacing)
        street = np.where(on_u_street, bearing_u, bearing_v)
        heading = np.mod(street + 90.0 * g.integers(0, 4, x.shape) + g.normal(0, 4.0, x.shape), 360.0)
        return u * c - v * s, u * s + v * c, heading

    lon, lat, heading = sampler.sample(region_idx, rng, avoid_water=True, snap=snap)
    # points that fell back to the region centre got no heading from `snap`
    heading = np.mod(heading, 360.0)
    n = region_idx.size
    width = max(6, len(str(n)))
    ids = np.strings.add("sv_", np.strings.zfill(np.arange(n).astype(str), width))
    return pd.DataFrame(
        {
            "image_id": ids.astype(object),
            "path": np.strings.add(f"{schema.STREET_VIEW_DIR}/", np.strings.add(ids, ".png")).astype(object),
            "lon": lon,
            "lat": lat,
            "heading": heading,
            REGION_ID: latents[REGION_ID].to_numpy()[region_idx],
        }
    )


def remote_sensing_tiles(
    config: SyntheticCityConfig, regions: pd.DataFrame, sampler: RegionSampler, rng: np.random.Generator
) -> pd.DataFrame:
    """`rs_per_region` tile centres per region: tile 0 on the cell centre, tiles 1.. at uniform random points of the
    hexagon (inside the city, land or water: imagery does not avoid rivers). Every tile has the same ground extent
    (`remote_sensing_extent_m`), so the tiles of a region overlap each other and their neighbours, as the tiles of a
    fixed imagery grid that intersect a hexagon do (the paper's cities have 2.1-3.7 tiles per region).

    Rows are tile-major (every region's tile 0, then every region's tile 1, ...): tile 0 of region r is row r, so its
    image (seeded by its row) is the one-tile-per-region city's tile. Image ids are `rs_<region>_<k>`.
    """
    ids = regions[REGION_ID].to_numpy().astype(str)
    n_reg, n_tiles = len(ids), int(config.rs_per_region)
    lon = np.tile(regions["lon"].to_numpy(dtype=np.float64), n_tiles)
    lat = np.tile(regions["lat"].to_numpy(dtype=np.float64), n_tiles)
    if n_tiles > 1:
        lon[n_reg:], lat[n_reg:], _ = sampler.sample(np.tile(np.arange(n_reg), n_tiles - 1), rng, avoid_water=False)
    region = np.tile(ids, n_tiles)
    stem = np.strings.add(np.strings.add(region, "_"), np.repeat(np.arange(n_tiles), n_reg).astype(str))
    return pd.DataFrame(
        {
            "image_id": np.strings.add("rs_", stem).astype(object),
            REGION_ID: region.astype(object),
            "path": np.strings.add(f"{schema.REMOTE_SENSING_DIR}/", np.strings.add(stem, ".png")).astype(object),
            "lon": lon,
            "lat": lat,
        }
    )


def remote_sensing_extent_m(regions, frame: CityFrame) -> float:
    """Side of the square remote-sensing tile (m): twice the largest centre-to-vertex distance of any hexagon, so a
    tile on a cell centre covers its whole hexagon, at one common ground resolution."""
    import shapely

    coords, ring = shapely.get_coordinates(regions.geometry.boundary.to_numpy(), return_index=True)
    x, y = frame.projection.to_local(coords[:, 0], coords[:, 1])
    cx, cy = frame.projection.to_local(regions["lon"].to_numpy()[ring], regions["lat"].to_numpy()[ring])
    return float(np.ceil(2000.0 * np.hypot(x - cx, y - cy).max()))
