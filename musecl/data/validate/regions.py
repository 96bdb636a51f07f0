"""Checks of `regions.parquet`: valid H3 cells at the declared resolution, centres and hexagon geometries that match
their cells, centres inside the boundary.

Every problem here is structural (regions are never dropped). The valid region ids (`ctx.region_ids`, and as H3
cells `ctx.region_cells`) it leaves in the context are what the point, image, indicator and coverage checks use.
"""
from __future__ import annotations

import numpy as np

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.context import Context, is_text, short, show


def normalise_region_ids(ctx: Context) -> None:
    """H3 ids in upper case or with surrounding spaces are normalised (lower case, stripped) in every table with a
    region_id column, with a warning and a count per file; the cleaned tables are written with the canonical ids."""
    for name in list(ctx.frames):
        frame = ctx.frames[name]
        if REGION_ID not in frame.columns or not is_text(frame[REGION_ID]):
            continue
        ids = frame[REGION_ID].astype("string")
        canonical = ids.str.strip().str.lower()
        changed = (ids != canonical).fillna(False).to_numpy(dtype=bool)
        if not changed.any():
            continue
        first = int(np.flatnonzero(changed)[0])
        frame[REGION_ID] = canonical.astype(object).where(canonical.notna(), None)
        ctx.converted[name].append(REGION_ID)
        ctx.warn(f"{schema.TABLES[name].file}: column '{REGION_ID}': {int(changed.sum())} H3 id(s) are not in "
                 f"canonical form (upper case or surrounding spaces; first at row {first}: "
                 f"{show(ctx.raw[name][REGION_ID].iloc[first])}); normalised to {canonical.iloc[first]!r} "
                 "(lower-case hex, as h3 writes them)")


def check_regions(ctx: Context) -> None:
    """regions.parquet against H3: ids, resolution, centre lon/lat, geometry, CRS and position in the boundary."""
    import geopandas as gpd
    import h3
    import shapely

    from musecl.data.regions import cell_polygons

    name, file = "regions", schema.REGIONS_FILE
    if name not in ctx.usable:
        return
    frame = ctx.frames[name]
    ids = frame[REGION_ID].astype("string").fillna("").to_numpy(dtype=object)
    # One Python call per region (thousands at most), never per point.
    valid = np.array([bool(h3.is_valid_cell(c)) for c in ids], dtype=bool)
    ctx.rows(name, ~valid, "are not valid H3 cell ids",
             "H3 cell indexes as hex strings, e.g. '8828308281fffff' (h3.latlng_to_cell)", [REGION_ID],
             reason="invalid H3 id", droppable=False)
    if ctx.resolution is None:
        ctx.not_checked(f"the H3 resolution of {file}", ctx.missing_resolution())
    else:
        res = np.array([h3.get_resolution(c) if v else -1 for c, v in zip(ids, valid)])
        wrong = valid & (res != ctx.resolution)
        if wrong.any() and wrong.sum() == valid.sum():
            # Every region disagrees with city.json: one error, and the regions stay usable for the other tables
            # (the checks that need the resolution are skipped with a note instead of failing every point).
            found = sorted(set(res[valid].tolist()))
            ctx.error(f"{schema.CITY_FILE}: key 'h3_resolution' is {ctx.resolution} but all {int(valid.sum())} "
                      f"regions of {file} are H3 cells at resolution {', '.join(map(str, found))} (first at row "
                      f"{int(np.flatnonzero(valid)[0])}: {REGION_ID}={ids[valid][0]!r}); expected the two to agree")
            ctx.resolution = None
        else:
            ctx.rows(name, wrong, "are H3 cells at another resolution",
                     f"cells at the h3_resolution {ctx.resolution} declared in {schema.CITY_FILE}", [REGION_ID],
                     reason="wrong H3 resolution", droppable=False)
    good = ctx.ok[name].copy()
    ctx.region_ids = ids[good].astype(str)
    ctx.region_cells = np.array([h3.str_to_int(c) for c in ctx.region_ids], dtype=np.uint64)
    if not good.any():
        return
    # The centre lon/lat must be the cell's centre.
    centres = np.array([h3.cell_to_latlng(c) for c in ctx.region_ids], dtype=np.float64).reshape(-1, 2)
    lon = frame["lon"].to_numpy(dtype=np.float64, na_value=np.nan)
    lat = frame["lat"].to_numpy(dtype=np.float64, na_value=np.nan)
    edge_deg = h3.average_hexagon_edge_length(ctx.resolution if ctx.resolution is not None else 8, "km") / 111.32
    off = np.full(len(frame), np.inf)
    off[good] = np.hypot((lon[good] - centres[:, 1]) * np.cos(np.radians(centres[:, 0])), lat[good] - centres[:, 0])
    ctx.rows(name, good & ~(off <= 0.1 * edge_deg), "have lon/lat away from their H3 cell's centre",
             "lon/lat = h3.cell_to_latlng(region_id) (within 10% of an edge length)", ["lon", "lat"],
             context=[REGION_ID], reason="wrong region centre", droppable=False)
    # The geometry must be the cell's hexagon.
    try:
        geo = gpd.read_parquet(ctx.root / file)
    except Exception as err:
        ctx.error(f"{file}: cannot read as GeoParquet ({short(err)}); expected a GeoParquet file with a "
                  "'geometry' column (GeoDataFrame.to_parquet)")
        geo = None
    if geo is not None:
        if geo.crs is None or not geo.crs.equals(schema.WGS84_CRS):
            found = geo.crs.to_string() if geo.crs is not None else "none"
            ctx.error(f"{file}: CRS is {found}; expected {schema.WGS84_CRS} (GeoDataFrame.set_crs('EPSG:4326'))")
        geoms = np.asarray(geo.geometry.array, dtype=object)[good]
        expected = cell_polygons(ctx.region_ids)
        with np.errstate(all="ignore"):
            diff = shapely.area(shapely.symmetric_difference(geoms, expected)) / shapely.area(expected)
        mismatch = np.zeros(len(frame), dtype=bool)
        mismatch[np.flatnonzero(good)] = ~(np.nan_to_num(diff, nan=np.inf) < 0.01)
        ctx.rows(name, mismatch, "have a geometry that is not their H3 cell's hexagon",
                 "geometry = the cell's boundary polygon (musecl.data.regions.regions_frame builds it)",
                 [REGION_ID], reason="wrong region geometry", droppable=False)
    if ctx.boundary is None:
        ctx.not_checked(f"whether the regions of {file} lie inside the boundary",
                        f"{schema.BOUNDARY_FILE} is unusable (see its error)")
    else:
        inside = shapely.intersects_xy(ctx.boundary, centres[:, 1], centres[:, 0])
        outside = np.zeros(len(frame), dtype=bool)
        outside[np.flatnonzero(good)] = ~inside
        ctx.rows(name, outside, f"have their centre outside {schema.BOUNDARY_FILE}",
                 "regions = the H3 cells whose centre lies inside the boundary", [REGION_ID], context=["lon", "lat"],
                 reason="region outside the boundary", droppable=False)
