"""The last check of a ``bad_rows="drop"`` run: dropping must never lose a table quietly.

Dropping bad rows is meant for a few broken records. When every row of a table would go (all trips outside the city,
all POIs in projected metres instead of lon/lat, every image unreadable), the cause is one systematic mistake, and
the table, a whole modality, would vanish from the city while the report said VALID. Such a table is an error naming
the file, how many rows would go and why, with a guess at the cause for coordinates; a table that loses more than
half of its rows gets a warning.
"""
from __future__ import annotations

import numpy as np

from musecl.data import schema
from musecl.data.validate.context import Context
from musecl.data.validate.points import POINTS

MAJORITY = 0.5  # a table losing more than this share of its rows gets a warning
WHAT = {"pois": "POIs", "trips": "trips (mobility)", "trajectories": "GPS trajectories (mobility)",
        "remote_sensing": "remote-sensing image index", "street_view": "street-view image index",
        "captions": "captions", "scene_facts": "scene facts"}
COORDINATE_REASONS = ("out-of-range coordinates", "outside the city")
EARTH_KM_PER_DEG = 111.32


def check_losses(ctx: Context) -> None:
    """With drop: an error for every table that had rows and would lose all of them; a warning above `MAJORITY`."""
    if not ctx.drop:
        return
    for name, ok in ctx.ok.items():
        file = schema.TABLES[name].file
        n, lost = len(ok), ctx.report.dropped_from(file)
        if not n or not lost:
            continue
        reasons = sorted(((k, r) for (f, r), k in ctx.report.dropped.items() if f == file), reverse=True)
        because = ", ".join(f"{k} {r}" for k, r in reasons)
        if not ok.any():
            hint = guess_cause(ctx, name, [r for _, r in reasons])
            ctx.error(f"{file}: --drop would drop all {n} rows ({because}), leaving the city without "
                      f"{WHAT.get(name, name)}. {hint}Expected at least one usable row: fix the cause rather than "
                      "dropping the whole table.")
        elif lost > MAJORITY * n:
            ctx.warn(f"{file}: --drop drops {lost} of {n} rows ({100 * lost / n:.0f}%: {because}); check that this "
                     "is a few broken records and not one systematic mistake")


def guess_cause(ctx: Context, name: str, reasons: list[str]) -> str:
    """'... are they in projected metres rather than WGS84 lon/lat? ' when the rows suggest a cause, else ''."""
    if "missing image file" in reasons:
        return ("Are the paths relative to the bundle folder (e.g. "
                f"'{schema.STREET_VIEW_DIR if name == 'street_view' else schema.REMOTE_SENSING_DIR}/x.jpg')? ")
    if name not in POINTS or not any(r in COORDINATE_REASONS for r in reasons):
        return ""
    lon_col, lat_col = POINTS[name][0]
    frame = ctx.frames[name]
    lon = frame[lon_col].to_numpy(dtype=np.float64, na_value=np.nan)
    lat = frame[lat_col].to_numpy(dtype=np.float64, na_value=np.nan)
    finite = np.isfinite(lon) & np.isfinite(lat)
    if not finite.any():
        return ""
    lon, lat = lon[finite], lat[finite]
    mid_lon, mid_lat = float(np.median(lon)), float(np.median(lat))
    if max(abs(mid_lon), abs(mid_lat)) > 1000:
        return (f"The coordinates lie around ({mid_lon:.6g}, {mid_lat:.6g}): are they in projected metres rather "
                "than WGS84 lon/lat? ")
    if ctx.boundary is not None:
        import shapely

        if shapely.intersects_xy(ctx.boundary, lat, lon).mean() > 0.5:
            return "Most of them lie inside the city with lon and lat exchanged: are the two columns swapped? "
        centre = ctx.boundary.centroid
        km = EARTH_KM_PER_DEG * float(np.hypot((mid_lon - centre.x) * np.cos(np.radians(centre.y)), mid_lat - centre.y))
        return (f"Their median point ({mid_lon:.6f}, {mid_lat:.6f}) is {km:.3g} km from the city's centre "
                f"({centre.x:.6f}, {centre.y:.6f}): are they from another city, or in another datum or coordinate "
                "system than WGS84 lon/lat? ")
    return "Are the coordinates WGS84 lon/lat (not projected, not swapped)? "
