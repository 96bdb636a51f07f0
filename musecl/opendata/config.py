"""The city config: one YAML file naming every input of a city build (annotated example: configs/example_city.yaml).

`load_city_config(path)` parses it into frozen dataclasses and checks it up front — types, allowed values, that every
named file exists — so a typo fails in a second with the key's full name, not an hour into a build. Relative paths
resolve against the config file's folder, so a config can travel with its data. The dataclasses and allowed values
live in :mod:`musecl.opendata.config_schema`, the key-by-key reading in :mod:`musecl.opendata.config_section`; both
are importable from here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import yaml

from musecl.opendata.config_schema import (
    BUNDLE_INDICATORS,
    DEFAULT_OSM_TAXONOMY,
    INDICATOR_KINDS,
    MISSING_POLICIES,
    NON_SQUARE,
    POINT_AGGREGATES,
    REGION_MODALITIES,
    SOURCE_CELLS,
    TRAJECTORY_FIELDS,
    TRANSFORMS,
    BoundaryConfig,
    CityConfig,
    IndicatorConfig,
    OsmPoisConfig,
    PoisConfig,
    RemoteSensingConfig,
    StreetViewConfig,
    TablePoisConfig,
    TilesTableConfig,
    TrajectoriesConfig,
    TripsConfig,
    WebTilesConfig,
    ZonesConfig,
)
from musecl.opendata.config_section import ConfigError, Section

__all__ = [
    "BUNDLE_INDICATORS",
    "DEFAULT_OSM_TAXONOMY",
    "INDICATOR_KINDS",
    "MISSING_POLICIES",
    "NON_SQUARE",
    "POINT_AGGREGATES",
    "REGION_MODALITIES",
    "SOURCE_CELLS",
    "TRAJECTORY_FIELDS",
    "TRANSFORMS",
    "BoundaryConfig",
    "CityConfig",
    "ConfigError",
    "IndicatorConfig",
    "OsmPoisConfig",
    "PoisConfig",
    "RemoteSensingConfig",
    "StreetViewConfig",
    "TablePoisConfig",
    "TilesTableConfig",
    "TrajectoriesConfig",
    "TripsConfig",
    "WebTilesConfig",
    "ZonesConfig",
    "city_config_from_dict",
    "load_city_config",
]


# ---- parsing --------------------------------------------------------------------------------------------------------
def load_city_config(path: str | Path, check_files: bool = True) -> CityConfig:
    """Read and check a city config YAML; relative paths in it resolve against the file's folder.

    `check_files=False` checks only the config itself (keys, types, values), not that the named files exist.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"city config {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err})") from err
    return city_config_from_dict(data, base_dir=path.parent, source=str(path), check_files=check_files)


def city_config_from_dict(data: Mapping[str, Any], base_dir: str | Path, source: str = "<dict>",
                          check_files: bool = True) -> CityConfig:
    """Parse a config given as a dict (what the YAML file holds); relative paths resolve against `base_dir`."""
    top = Section(data, "", source, Path(base_dir), check_files)
    name = top.str("name")
    resolution = top.int("h3_resolution")
    if not 0 <= resolution <= 15:
        raise top.error("h3_resolution", f"expected 0..15, got {resolution}")
    config = CityConfig(
        name=name,
        h3_resolution=resolution,
        local_crs=top.str("local_crs", "auto"),
        workers=top.int("workers", 1, minimum=1),
        regions=_regions(top.section("regions")),
        boundary=_boundary(top.section("boundary", required=True)),
        pois=_pois(top.section("pois")),
        trips=_trips(top.section("trips")),
        trajectories=_trajectories(top.section("trajectories")),
        remote_sensing=_remote_sensing(top.section("remote_sensing", required=True)),
        street_view=_street_view(top.section("street_view", required=True)),
        indicators=_indicators(top.section("indicators", required=True)),
        source=source,
        base_dir=Path(base_dir),
        raw=dict(data),
    )
    top.finish()
    _check_modalities(config)
    return config


# What a `kind: bundle` indicator counts, and the config section it needs.
BUNDLE_SOURCES = {"poi_count": "pois", "comment_count": "pois", "trip_count": "trips", "mobility_count": "trajectories"}


def _check_modalities(config: CityConfig) -> None:
    """POIs and mobility are optional (a city may lack either or both; the pipeline skips what needs them), but what
    the config asks of them must exist: `regions.keep: [pois]` and the `bundle` indicators counted from them."""
    if config.pois is None and "pois" in config.regions:
        raise ConfigError(f"{config.source}: key 'regions.keep': 'pois' needs a 'pois' section (the city has none)")
    for ind in config.indicators:
        needs = BUNDLE_SOURCES.get(ind.of or "") if ind.kind == "bundle" else None
        if needs is not None and getattr(config, needs) is None:
            raise ConfigError(f"{config.source}: key 'indicators.{ind.name}': {ind.of} is counted from the bundle's "
                              f"{needs}, but the config has no '{needs}' section")


def _regions(s: Section | None) -> tuple[str, ...]:
    if s is None:
        return ("rs", "sv")
    keep = s.str_list("keep", ("rs", "sv"))
    for m in keep:
        if m not in REGION_MODALITIES:
            raise s.error("keep", f"expected modalities among {list(REGION_MODALITIES)}, got {m!r}")
    s.finish()
    return tuple(dict.fromkeys(keep))


def _boundary(s: Section) -> BoundaryConfig:
    if s.has("file") == s.has("bbox"):
        raise s.error("file", "give exactly one of 'file' (a polygon file) and 'bbox' "
                              "([min_lon, min_lat, max_lon, max_lat])")
    bbox = None
    if s.has("bbox"):
        value = s.get("bbox")
        ok = isinstance(value, list) and len(value) == 4 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        if not ok or not (value[0] < value[2] and value[1] < value[3]):
            raise s.error("bbox", f"expected [min_lon, min_lat, max_lon, max_lat] with min < max, got {value!r}")
        if not (-180 <= value[0] and value[2] <= 180 and -90 <= value[1] and value[3] <= 90):
            raise s.error("bbox", f"expected WGS84 degrees (lon in [-180, 180], lat in [-90, 90]), got {value!r}")
        bbox = tuple(float(v) for v in value)
    where = None
    w = s.section("where")
    if w is not None:
        where = (w.str("column"), w.str_list("values"))
        w.finish()
    out = BoundaryConfig(file=s.file("file", None), layer=s.str("layer", None), where=where, bbox=bbox,
                         crs=s.crs())
    s.finish()
    return out


def _pois(s: Section | None) -> PoisConfig | None:
    """The POI sources, or None for a city without POIs (the pipeline then skips what needs them)."""
    if s is None:
        return None
    osm = table = None
    o = s.section("osm")
    if o is not None:
        osm = OsmPoisConfig(
            file=o.file("file"),
            taxonomy=o.file("taxonomy", DEFAULT_OSM_TAXONOMY),
            unmapped=o.choice("unmapped", ("drop", "other"), "drop"),
            text_exclude=o.str_list("text_exclude", ()),
            location_index=o.str("location_index", "flex_mem"),
        )
        o.finish()
    t = s.section("table")
    if t is not None:
        c = t.section("columns", required=True)
        table = TablePoisConfig(
            file=t.file("file"),
            lon=c.str("lon"),
            lat=c.str("lat"),
            category=c.str("category"),
            category2=c.str("category2", None),
            name=c.str("name", None),
            text=c.str("text", None),
            n_comments=c.str("n_comments", None),
            poi_id=c.str("poi_id", None),
            category_map=t.file("category_map", None),
            group_rows_by=t.str_list("group_rows_by", ()),
            separator=t.str("separator", ","),
            crs=t.crs(),
        )
        c.finish()
        t.finish()
    s.finish()
    if osm is None and table is None:
        raise s.error("osm", "give 'osm' (an .osm.pbf extract) or 'table' (a POI CSV/Parquet), or both")
    return PoisConfig(osm=osm, table=table)


def _trips(s: Section | None) -> TripsConfig | None:
    if s is None:
        return None
    c = s.section("columns", required=True)
    zones = None
    z = s.section("zones")
    if z is not None:
        zones = ZonesConfig(
            file=z.file("file"),
            id_column=z.str("id_column"),
            layer=z.str("layer", None),
            point=z.choice("point", ("random", "representative"), "random"),
            pool_size=z.int("pool_size", 4096, minimum=1),
        )
        z.finish()
    coords = [c.str(k, None) for k in ("origin_lon", "origin_lat", "dest_lon", "dest_lat")]
    zone_cols = [c.str(k, None) for k in ("origin_zone", "dest_zone")]
    if zones is None and not all(coords):
        raise c.error("origin_lon", "trips need origin_lon, origin_lat, dest_lon and dest_lat columns, "
                                    "or origin_zone and dest_zone columns plus a 'zones' section (zone polygons)")
    if zones is not None and not all(zone_cols):
        raise c.error("origin_zone", "with a 'zones' section, give the origin_zone and dest_zone columns")
    out = TripsConfig(
        files=s.files("files"),
        start_time=c.str("start_time"),
        origin_lon=coords[0], origin_lat=coords[1], dest_lon=coords[2], dest_lat=coords[3],
        origin_zone=zone_cols[0], dest_zone=zone_cols[1],
        zones=zones,
        end_time=c.str("end_time", None),
        trip_id=c.str("trip_id", None),
        time_format=s.str("time_format", None),
        chunk_rows=s.int("chunk_rows", 1_000_000, minimum=1),
        separator=s.str("separator", ","),
        crs=s.crs(),
    )
    c.finish()
    s.finish()
    return out


def _trajectories(s: Section | None) -> TrajectoriesConfig | None:
    if s is None:
        return None
    columns = s.str_list("columns", TRAJECTORY_FIELDS)
    for col in columns:
        if col not in (*TRAJECTORY_FIELDS, "skip"):
            raise s.error("columns", f"column names must be among {list(TRAJECTORY_FIELDS)} or 'skip', got {col!r}")
    for needed in ("time", "lon", "lat"):
        if needed not in columns:
            raise s.error("columns", f"'{needed}' is missing from {list(columns)} (vehicle_id may be left out: "
                                     "the file name is used)")
    out = TrajectoriesConfig(
        folder=s.file("folder", folder=True),
        pattern=s.str("pattern", "*.txt"),
        columns=columns,
        separator=s.str("separator", ","),
        header=s.bool("header", False),
        time_format=s.str("time_format", "%Y-%m-%d %H:%M:%S"),
        files_per_chunk=s.int("files_per_chunk", 256, minimum=1),
        crs=s.crs(),
    )
    s.finish()
    return out


def _remote_sensing(s: Section) -> RemoteSensingConfig:
    web = None
    w = s.section("web_tiles")
    if w is not None:
        web = WebTilesConfig(
            folder=w.file("folder", folder=True),
            zoom=w.int("zoom", minimum=0),
            pattern=w.str("pattern", "{z}/{x}/{y}.png"),
            scheme=w.choice("scheme", ("xyz", "tms"), "xyz"),
        )
        for placeholder in ("{z}", "{x}", "{y}"):
            if placeholder not in web.pattern:
                raise w.error("pattern", f"expected a pattern with {{z}}, {{x}} and {{y}}, got {web.pattern!r}")
        w.finish()
    tiles = _tiles_table(s.section("tiles"))
    geotiff = s.file("geotiff", None)
    if sum(x is not None for x in (geotiff, web, tiles)) != 1:
        raise s.error("geotiff", "give exactly one of 'geotiff' (a georeferenced image), 'web_tiles' (a tile "
                                 "folder) and 'tiles' (a table of pre-cut tiles per region)")
    rescale = s.get("rescale", None)
    if rescale is not None and rescale != "percentile":
        ok = isinstance(rescale, list) and len(rescale) == 2 and all(isinstance(v, (int, float)) for v in rescale)
        if not ok or not rescale[0] < rescale[1]:
            raise s.error("rescale", f"expected null, 'percentile' or [low, high] with low < high, got {rescale!r}")
        rescale = (float(rescale[0]), float(rescale[1]))
    bands = tuple(int(b) for b in s.str_list("bands", ("1", "2", "3")))
    if len(bands) not in (1, 3) or min(bands) < 1:
        raise s.error("bands", f"expected 1 or 3 band numbers counted from 1 (R, G, B), got {list(bands)}")
    out = RemoteSensingConfig(
        geotiff=geotiff,
        web_tiles=web,
        tiles=tiles,
        tile_pixels=s.int("tile_pixels", 64, minimum=8),
        ground_resolution_m=s.float("ground_resolution_m", None, positive=True),
        bands=bands,
        rescale=rescale,
        min_coverage=s.float("min_coverage", 0.5),
        resampling=s.choice("resampling", ("nearest", "bilinear", "cubic", "average", "lanczos"), "bilinear"),
    )
    if not 0 <= out.min_coverage <= 1:
        raise s.error("min_coverage", f"expected a share in [0, 1], got {out.min_coverage}")
    s.finish()
    return out


def _tiles_table(t: Section | None) -> TilesTableConfig | None:
    if t is None:
        return None
    c = t.section("columns") or Section({}, t.key("columns"), t.source, t.base_dir, t.check_files)
    out = TilesTableConfig(
        table=t.file("table"),
        path=c.str("path", "path"),
        lon=c.str("lon", None),
        lat=c.str("lat", None),
        region_id=c.str("region_id", None),
        crs=t.crs(),
        non_square=t.choice("non_square", NON_SQUARE, "crop"),
        separator=t.str("separator", ","),
    )
    if (out.region_id is None) == (out.lon is None or out.lat is None):
        raise c.error("region_id", "give either region_id (an H3 cell id column) or both lon and lat (a point in "
                                   "each tile's region)")
    c.finish()
    t.finish()
    return out


def _street_view(s: Section) -> StreetViewConfig:
    metadata = s.file("metadata")
    c = s.section("columns") or Section({}, s.key("columns"), s.source, s.base_dir, s.check_files)
    out = StreetViewConfig(
        metadata=metadata,
        folder=s.file("folder", metadata.parent, folder=True),
        path=c.str("path", "path"),
        lon=c.str("lon", "lon"),
        lat=c.str("lat", "lat"),
        heading=c.str("heading", None),
        image_id=c.str("image_id", None),
        panoramas=s.bool("panoramas", False),
        max_size=s.int("max_size", None, minimum=16),
        separator=s.str("separator", ","),
        crs=s.crs(),
    )
    c.finish()
    s.finish()
    return out


def _indicators(s: Section) -> tuple[IndicatorConfig, ...]:
    if not s.data:
        raise ConfigError(f"{s.source}: key 'indicators': give at least one indicator (the prediction targets)")
    out = []
    for name in list(s.data):
        spec = s.section(name, required=True)
        kind = spec.choice("kind", INDICATOR_KINDS)
        common = dict(
            name=str(name),
            kind=kind,
            transform=spec.choice("transform", TRANSFORMS, "log1p"),
            description=spec.str("description", ""),
            unit=spec.str("unit", ""),
        )
        if kind == "points":
            ind = _point_indicator(spec, common)
        elif kind == "raster":
            ind = IndicatorConfig(**common, file=spec.file("file"), band=spec.int("band", 1, minimum=1),
                                  missing=spec.choice("missing", MISSING_POLICIES, "nearest"))
        elif kind == "polygons":
            ind = IndicatorConfig(**common, file=spec.file("file"), column=spec.str("column"),
                                  layer=spec.str("layer", None),
                                  quantity=spec.choice("quantity", ("intensive", "extensive"), "intensive"),
                                  missing=spec.choice("missing", MISSING_POLICIES, "nearest"), crs=spec.crs())
        else:
            ind = IndicatorConfig(**common, of=spec.choice("of", BUNDLE_INDICATORS))
        spec.finish()
        out.append(ind)
    s.finish()
    return tuple(out)


def _point_indicator(spec: Section, common: dict) -> IndicatorConfig:
    """kind: points — events summed per region, or values at another grid's points (nearest, mean, area_weighted)."""
    aggregate = spec.choice("aggregate", POINT_AGGREGATES, "sum")
    header = spec.bool("header", True)
    columns = spec.str_list("columns", ())
    if not header and not columns:
        raise spec.error("columns", "with header: false, name the file's columns in order (e.g. [lon, lat, value])")
    if header and columns:
        raise spec.error("columns", "columns names a file without a header row; set header: false or leave it out")
    value = spec.str("value", None)
    weight = spec.str("weight", None)
    if aggregate == "sum" and value is not None:
        raise spec.error("value", "aggregate sum adds up `weight` (or counts rows); `value` is for nearest, mean "
                                  "and area_weighted")
    if aggregate != "sum":
        if weight is not None:
            raise spec.error("weight", f"aggregate {aggregate} takes the `value` column, not `weight`")
        if value is None:
            raise spec.error("value", f"aggregate {aggregate} needs the column holding the values")
    names = {spec.str("lon"), spec.str("lat"), value, weight} - {None}
    if columns and not names <= set(columns):
        raise spec.error("columns", f"{sorted(names - set(columns))} not among the named columns {list(columns)}")
    source_cells = spec.choice("source_cells", SOURCE_CELLS, "voronoi")
    h3_res = spec.int("source_h3_resolution", None, minimum=0)
    if aggregate == "area_weighted" and source_cells == "h3" and h3_res is None:
        raise spec.error("source_h3_resolution", "source_cells h3 needs the source grid's H3 resolution")
    if aggregate in ("mean", "area_weighted"):
        missing = spec.choice("missing", MISSING_POLICIES, "error")
    else:
        if spec.has("missing"):
            raise spec.error("missing", f"aggregate {aggregate} gives every region a value (sum: 0 without a "
                                        "point; nearest: the nearest point's); missing applies to mean and "
                                        "area_weighted")
        missing = "error"
    return IndicatorConfig(
        **common, file=spec.file("file"), lon=spec.str("lon"), lat=spec.str("lat"), weight=weight,
        separator=spec.str("separator", ","), chunk_rows=spec.int("chunk_rows", 1_000_000, minimum=1),
        aggregate=aggregate, value=value, header=header, columns=columns, source_cells=source_cells,
        source_h3_resolution=h3_res, missing=missing, crs=spec.crs(),
        quantity=spec.choice("quantity", ("intensive", "extensive"), "intensive"),
    )
