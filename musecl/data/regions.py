"""Regions are H3 cells; points are assigned to them with h3, one C call per point and no Python-level geometry.

MuseCL used a staggered hexagon grid with hard-coded, city-specific origin and step constants; H3 gives the same kind of
hexagons anywhere on Earth from one parameter, the resolution (res 8: ~0.74 km² cells, ~0.40 km apothem, close to the
paper's New York grid; res 7: ~5.2 km², close to its Beijing/Shanghai grid).
"""
from __future__ import annotations

from itertools import repeat

import geopandas as gpd
import h3
import numpy as np
import pandas as pd
import shapely
from h3.api import numpy_int as h3_int

from musecl.data.schema import REGION_ID, WGS84_CRS

_CHUNK = 1_000_000


def latlng_to_cells(lat: np.ndarray, lon: np.ndarray, resolution: int) -> np.ndarray:
    """H3 cell (as uint64) of every point. Raises ValueError naming the first non-finite or out-of-range row."""
    lat = np.asarray(lat, dtype=np.float64)
    lon = np.asarray(lon, dtype=np.float64)
    if lat.shape != lon.shape:
        raise ValueError(f"lat and lon differ in shape: {lat.shape} vs {lon.shape}")
    bad = ~(np.isfinite(lat) & np.isfinite(lon) & (np.abs(lat) <= 90) & (np.abs(lon) <= 180))
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"{int(bad.sum())} points have non-finite or out-of-range coordinates, first at row {row}: "
            f"lat={float(lat[row])!r}, lon={float(lon[row])!r} (expected -90<=lat<=90, -180<=lon<=180)"
        )
    out = np.empty(lat.shape[0], dtype=np.uint64)
    for start in range(0, lat.shape[0], _CHUNK):
        stop = min(start + _CHUNK, lat.shape[0])
        out[start:stop] = np.fromiter(
            map(h3_int.latlng_to_cell, lat[start:stop].tolist(), lon[start:stop].tolist(), repeat(resolution)),
            dtype=np.uint64,
            count=stop - start,
        )
    return out


def cells_to_str(cells: np.ndarray) -> np.ndarray:
    """uint64 H3 cells to their hex-string ids (converts each distinct value once)."""
    uniq, inverse = np.unique(np.asarray(cells, dtype=np.uint64), return_inverse=True)
    names = np.array([h3.int_to_str(int(c)) for c in uniq], dtype=object)
    return names[inverse]


def assign_points_to_regions(
    lon: np.ndarray, lat: np.ndarray, region_ids: pd.Index | np.ndarray, resolution: int
) -> np.ndarray:
    """Region id (H3 string) of every point, or None where the point's cell is not one of `region_ids`.

    Vectorised: the per-point work is one H3 C call; the membership test is a hash lookup on uint64 cells.
    """
    cells = latlng_to_cells(lat, lon, resolution)
    known = np.array([h3.str_to_int(r) for r in region_ids], dtype=np.uint64)
    inside = np.isin(cells, known)
    out = np.full(cells.shape[0], None, dtype=object)
    if inside.any():
        out[inside] = cells_to_str(cells[inside])
    return out


def cell_polygons(region_ids: list[str] | np.ndarray) -> np.ndarray:
    """Hexagon geometries (shapely Polygons, lon/lat order) of H3 cells."""
    polys = []
    for cell in region_ids:
        ring = [(lng, lat) for lat, lng in h3.cell_to_boundary(str(cell))]
        polys.append(shapely.Polygon(ring))
    return np.array(polys, dtype=object)


def regions_from_boundary(boundary: shapely.Geometry, resolution: int) -> gpd.GeoDataFrame:
    """All H3 cells whose centre lies inside `boundary` (the rule MuseCL used for its grid), sorted by id."""
    shape = h3.geo_to_h3shape(shapely.geometry.mapping(boundary))
    cells = sorted(h3.h3shape_to_cells(shape, resolution))
    if not cells:
        raise ValueError(f"the boundary contains no H3 cell centre at resolution {resolution}; use a finer resolution")
    return regions_frame(cells)


def regions_frame(cells: list[str]) -> gpd.GeoDataFrame:
    """The regions table for a list of H3 cell ids: id, hexagon, centre lon/lat."""
    centres = np.array([h3.cell_to_latlng(c) for c in cells], dtype=np.float64).reshape(-1, 2)
    return gpd.GeoDataFrame(
        {REGION_ID: np.array(cells, dtype=object), "lon": centres[:, 1], "lat": centres[:, 0]},
        geometry=cell_polygons(cells),
        crs=WGS84_CRS,
    )


def parent_cells(region_ids: np.ndarray | list[str], parent_resolution: int) -> np.ndarray:
    """H3 parent of each region at a coarser resolution (used by spatial cross-validation)."""
    return np.array([h3.cell_to_parent(str(r), parent_resolution) for r in region_ids], dtype=object)
