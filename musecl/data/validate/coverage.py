"""The check that runs after every table is checked: does each region still have what MuseCL needs once bad rows
are set aside? At least one usable remote-sensing image and one street-view image per region when the city has that
modality (errors); regions without any POI only get a warning, their POI embedding is empty. A modality the city does
not have at all is not checked here (`columns.check_modalities` reports which exist).
"""
from __future__ import annotations

import numpy as np

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.context import MAX_EXAMPLES, Context


def check_coverage(ctx: Context) -> None:
    """Regions without a usable remote-sensing or street-view image (errors) or without a POI (warning)."""
    if ctx.region_ids is None or not len(ctx.region_ids):
        return
    n = len(ctx.region_ids)
    if "remote_sensing" in ctx.usable:
        rs = ctx.frames["remote_sensing"][REGION_ID].astype("string")[ctx.ok["remote_sensing"]]
        without = np.setdiff1d(ctx.region_ids, rs.dropna().to_numpy(dtype=object).astype(str))
        if len(without):
            ctx.error(f"{schema.REMOTE_SENSING_FILE}: {len(without)} of {n} regions have no remote-sensing image "
                      f"(first: {', '.join(without[:MAX_EXAMPLES])}); expected at least one usable image per region "
                      f"of {schema.REGIONS_FILE}")
    if ctx.sv_regions is not None:
        located = ctx.sv_regions[ctx.ok["street_view"]]
        without = np.setdiff1d(ctx.region_ids, located[located != None].astype(str))  # noqa: E711
        if len(without):
            ctx.error(f"{schema.STREET_VIEW_FILE}: {len(without)} of {n} regions have no street-view image "
                      f"(first: {', '.join(without[:MAX_EXAMPLES])}); expected at least one usable image whose "
                      "lon/lat lies in each region's hexagon")
    if "pois" in ctx.usable and ctx.resolution is not None:
        from musecl.data.regions import assign_points_to_regions

        frame, ok = ctx.frames["pois"], ctx.ok["pois"]
        located = assign_points_to_regions(frame["lon"].to_numpy(np.float64)[ok],
                                           frame["lat"].to_numpy(np.float64)[ok], ctx.region_ids, ctx.resolution)
        without = np.setdiff1d(ctx.region_ids, located[located != None].astype(str))  # noqa: E711
        if len(without):
            ctx.warn(f"{schema.POIS_FILE}: {len(without)} of {n} regions contain no POI (first: "
                     f"{', '.join(without[:MAX_EXAMPLES])}); their POI embedding will be empty")
