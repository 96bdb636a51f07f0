"""Checks of the point tables: coordinates (finite, in range, inside the city) for POIs, trips, GPS trajectories
and street-view images, plus the POI category format and trip times.

`check_points` is the shared vectorised coordinate check; a point just outside the boundary still belongs to the
city when it lies in one of the regions' hexagons.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.data import schema
from musecl.data.validate.context import Context

# Point columns checked for coordinates and location: table -> (lon, lat) pairs.
POINTS = {
    "pois": (("lon", "lat"),),
    "trips": (("origin_lon", "origin_lat"), ("dest_lon", "dest_lat")),
    "trajectories": (("lon", "lat"),),
    "street_view": (("lon", "lat"),),
}


def check_points(ctx: Context, name: str, lon_col: str, lat_col: str) -> None:
    """Missing, out-of-range and outside-the-city coordinates (vectorised)."""
    import shapely

    frame = ctx.frames[name]
    lon = frame[lon_col].to_numpy(dtype=np.float64, na_value=np.nan)
    lat = frame[lat_col].to_numpy(dtype=np.float64, na_value=np.nan)
    cols = [lon_col, lat_col]
    ctx.rows(name, ~(np.isfinite(lon) & np.isfinite(lat)), "have missing (NaN) or infinite coordinates",
             "finite WGS84 degrees", cols, reason="missing coordinates")
    out_of_range = (np.abs(lat) > 90) | (np.abs(lon) > 180)
    ctx.rows(name, out_of_range, "have out-of-range coordinates",
             "-180 <= lon <= 180 and -90 <= lat <= 90 (WGS84 degrees, lon/lat not swapped or projected)", cols,
             reason="out-of-range coordinates")
    where = "whether the points of " + schema.TABLES[name].file + " lie inside the city"
    if ctx.boundary is None:
        ctx.not_checked(where, f"{schema.BOUNDARY_FILE} is unusable (see its error)")
        return
    if ctx.resolution is None:  # a point outside the boundary may still lie in a region's hexagon: unknowable here
        ctx.not_checked(where, ctx.missing_resolution())
        return
    if ctx.region_cells is None:
        ctx.not_checked(where, f"{schema.REGIONS_FILE} is unusable (see its error)")
        return
    idx = np.flatnonzero(ctx.ok[name])
    inside = shapely.intersects_xy(ctx.boundary, lon[idx], lat[idx])
    outside_idx = idx[~inside]
    if len(outside_idx):
        from musecl.data.regions import latlng_to_cells

        # A point just outside the boundary but in a region's hexagon still belongs to the city.
        cells = latlng_to_cells(lat[outside_idx], lon[outside_idx], ctx.resolution)
        outside_idx = outside_idx[~np.isin(cells, ctx.region_cells)]
    outside = np.zeros(len(frame), dtype=bool)
    outside[outside_idx] = True
    ctx.rows(name, outside, "lie outside the city",
             f"points inside {schema.BOUNDARY_FILE} or inside one of the regions' hexagons", cols,
             reason="outside the city")


def check_pois(ctx: Context) -> None:
    """pois.parquet: coordinates, and categories of the form 'level1;level2'."""
    name = "pois"
    if name not in ctx.usable:
        return
    check_points(ctx, name, "lon", "lat")
    category = ctx.frames[name]["category"].astype("string")
    bad = ~category.str.fullmatch(r"[^;]*[^;\s][^;]*;[^;]*[^;\s][^;]*").fillna(False).to_numpy(dtype=bool)
    ctx.rows(name, bad, "have a category not of the form 'level1;level2'",
             "two non-empty levels separated by one ';', e.g. 'food;restaurant'", ["category"],
             reason="bad category")


def check_mobility(ctx: Context) -> None:
    """trips.parquet (origins, destinations, end after start) and trajectories.parquet (GPS points)."""
    if "trips" in ctx.usable:
        for lon_col, lat_col in POINTS["trips"]:
            check_points(ctx, "trips", lon_col, lat_col)
        frame = ctx.frames["trips"]
        if "end_time" in frame.columns and pd.api.types.is_datetime64_any_dtype(frame["end_time"]):
            try:
                backwards = (frame["end_time"] < frame["start_time"]).fillna(False).to_numpy(dtype=bool)
            except TypeError as err:  # mixing time-zone-aware and naive columns
                ctx.error(f"{schema.TRIPS_FILE}: columns 'start_time'/'end_time' cannot be compared ({err}); "
                          "expected both with the same time zone (or both naive)")
            else:
                ctx.rows("trips", backwards, "end before they start", "end_time >= start_time",
                         ["start_time", "end_time"], reason="end_time before start_time")
    if "trajectories" in ctx.usable:
        check_points(ctx, "trajectories", "lon", "lat")
