"""Checks of the bundle's two non-table files: `city.json` (name, H3 resolution, CRS, format version, indicators)
and `boundary.geojson` (one valid WGS84 (Multi)Polygon).

They run first: the H3 resolution (`ctx.resolution`), the declared indicators (`ctx.meta`) and the prepared boundary
geometry (`ctx.boundary`) they leave in the context are what the table checks compare against.
"""
from __future__ import annotations

import json

from musecl.data import schema
from musecl.data.validate.context import Context, closest, short

REQUIRED_META = ("name", "h3_resolution", "indicators")


def check_meta(ctx: Context) -> None:
    """city.json: a JSON object with the required keys, a valid resolution, WGS84 and well-formed indicators."""
    path = ctx.root / schema.CITY_FILE
    file = schema.CITY_FILE
    if not path.is_file():
        ctx.error(f"{file}: missing (expected a JSON object with keys {list(REQUIRED_META)})")
        return
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        ctx.error(f"{file}: not valid JSON ({err})")
        return
    if not isinstance(meta, dict):
        ctx.error(f"{file}: expected a JSON object at the top level, found {type(meta).__name__}")
        return
    ctx.meta = meta
    for key in REQUIRED_META:
        if key not in meta:
            ctx.error(f"{file}: missing key '{key}'{closest(key, list(meta))} (expected keys {list(REQUIRED_META)})")
    if "name" in meta:
        ctx.report.city = str(meta["name"])
    res = meta.get("h3_resolution")
    if "h3_resolution" in meta:
        if isinstance(res, bool) or not isinstance(res, int) or not 0 <= res <= 15:
            ctx.error(f"{file}: key 'h3_resolution' is {res!r}; expected an integer H3 resolution in 0..15 "
                      "(8: ~0.74 km² hexagons, 7: ~5.2 km²)")
        else:
            ctx.resolution = res
            ctx.report.h3_resolution = res
            ctx.meta_unusable = False
    crs = meta.get("crs", schema.WGS84_CRS)
    if str(crs).upper() not in (schema.WGS84_CRS, "OGC:CRS84", "WGS84", "WGS 84", "CRS84"):
        ctx.error(f"{file}: key 'crs' is {crs!r}; expected {schema.WGS84_CRS!r} (all coordinates are WGS84 lon/lat)")
    version = meta.get("format_version", schema.FORMAT_VERSION)
    if not isinstance(version, int) or version > schema.FORMAT_VERSION:
        ctx.error(f"{file}: key 'format_version' is {version!r}; this musecl reads format version "
                  f"{schema.FORMAT_VERSION} and older")
    indicators = meta.get("indicators")
    if indicators is None:
        return
    if not isinstance(indicators, dict):
        ctx.error(f"{file}: key 'indicators' is a {type(indicators).__name__}; expected an object "
                  "{name: {transform, unit, description}}")
        return
    for name, spec in indicators.items():
        if not isinstance(spec, dict):
            ctx.error(f"{file}: indicators.{name} is {spec!r}; expected an object {{transform, unit, description}}")
            continue
        transform = spec.get("transform")
        if transform not in schema.TRANSFORMS:
            ctx.error(f"{file}: indicators.{name}.transform is {transform!r}; expected one of "
                      f"{list(schema.TRANSFORMS)}")
        for key in ("unit", "description"):
            if key in spec and not isinstance(spec[key], str):
                ctx.error(f"{file}: indicators.{name}.{key} is {spec[key]!r}; expected a string")


def check_boundary(ctx: Context) -> None:
    """boundary.geojson: readable, (Multi)Polygons only, WGS84, valid, within lon/lat ranges; sets `ctx.boundary`."""
    import geopandas as gpd
    import shapely

    file = schema.BOUNDARY_FILE
    path = ctx.root / file
    if not path.is_file():
        ctx.error(f"{file}: missing (expected a GeoJSON file with the city's (Multi)Polygon boundary, WGS84)")
        return
    try:
        frame = gpd.read_file(path)
    except Exception as err:  # pyogrio raises several kinds
        ctx.error(f"{file}: cannot read as GeoJSON ({short(err)})")
        return
    geoms = frame.geometry[frame.geometry.notna()] if frame.geometry is not None else []
    if len(geoms) == 0:
        ctx.error(f"{file}: holds no geometry; expected one (Multi)Polygon feature")
        return
    kinds = set(geoms.geom_type)
    if not kinds <= {"Polygon", "MultiPolygon"}:
        ctx.error(f"{file}: geometry type(s) {sorted(kinds)}; expected Polygon or MultiPolygon")
        return
    if frame.crs is not None and not frame.crs.equals("EPSG:4326") and not frame.crs.equals("OGC:CRS84"):
        ctx.error(f"{file}: CRS is {frame.crs.to_string()}; expected WGS84 lon/lat ({schema.WGS84_CRS})")
        return
    invalid = ~shapely.is_valid(geoms.to_numpy())
    if invalid.any():
        reason = shapely.is_valid_reason(geoms.to_numpy()[invalid][0])
        ctx.error(f"{file}: {int(invalid.sum())} invalid polygon(s) ({reason}); expected a valid polygon "
                  "(shapely.make_valid can repair it)")
        return
    geom = shapely.union_all(geoms.to_numpy())
    minx, miny, maxx, maxy = geom.bounds
    if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
        ctx.error(f"{file}: bounds ({minx}, {miny}, {maxx}, {maxy}) exceed lon/lat ranges; expected WGS84 degrees "
                  "(lon in [-180, 180], lat in [-90, 90]) in (lon, lat) order")
        return
    shapely.prepare(geom)
    ctx.boundary = geom
