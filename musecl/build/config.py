"""The city config: one YAML file naming every input of a city build (annotated example: configs/example_city.yaml).

`load_city_config(path)` parses it into frozen dataclasses and checks it up front — types, allowed values, that every
named file exists — so a typo fails in a second with the key's full name, not an hour into a build. Relative paths
resolve against the config file's folder, so a config can travel with its data.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import yaml

from musecl.build.report import BuildError

DEFAULT_OSM_TAXONOMY = Path(__file__).with_name("osm_poi_taxonomy.csv")
_REQUIRED = object()

TRANSFORMS = ("identity", "log1p")
INDICATOR_KINDS = ("points", "raster", "polygons", "bundle")
BUNDLE_INDICATORS = ("poi_count", "comment_count", "trip_count", "mobility_count")
MISSING_POLICIES = ("nearest", "zero", "error")


class ConfigError(BuildError):
    """The city config is malformed; the message names the config file and the key."""


class _Section:
    """A mapping being read key by key, remembering its dotted path so errors can name the key."""

    def __init__(self, data: Any, path: str, source: str, base_dir: Path, check_files: bool = True) -> None:
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source}: key '{path or '<top level>'}': expected a mapping, got {type(data).__name__}")
        self.data = dict(data)
        self.path = path
        self.source = source
        self.base_dir = base_dir
        self.check_files = check_files
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, name: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: key '{self.key(name)}': {message}")

    def has(self, name: str) -> bool:
        return self.data.get(name) is not None

    def get(self, name: str, default: Any = _REQUIRED) -> Any:
        self.used.add(name)
        if self.data.get(name) is None:
            if default is _REQUIRED:
                raise self.error(name, "missing (required)")
            return default
        return self.data[name]

    def str(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise self.error(name, f"expected a string, got {value!r}")
        return str(value)

    def int(self, name: str, default: Any = _REQUIRED, minimum: int | None = None) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(name, f"expected an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(name, f"expected an integer >= {minimum}, got {value}")
        return int(value)

    def float(self, name: str, default: Any = _REQUIRED, positive: bool = False) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(name, f"expected a number, got {value!r}")
        if positive and not value > 0:
            raise self.error(name, f"expected a positive number, got {value}")
        return float(value)

    def bool(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if not isinstance(value, bool):
            raise self.error(name, f"expected true or false, got {value!r}")
        return value

    def choice(self, name: str, options: tuple[str, ...], default: Any = _REQUIRED) -> str:
        value = self.get(name, default)
        if value not in options:
            raise self.error(name, f"expected one of {list(options)}, got {value!r}")
        return str(value)

    def file(self, name: str, default: Any = _REQUIRED, folder: bool = False) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if not isinstance(value, str):
            raise self.error(name, f"expected a path, got {value!r}")
        path = Path(value).expanduser()
        path = path if path.is_absolute() else (self.base_dir / path)
        if not self.check_files:
            return path
        if folder and not path.is_dir():
            raise self.error(name, f"folder {path} does not exist")
        if not folder and not path.is_file():
            raise self.error(name, f"file {path} does not exist")
        return path

    def files(self, name: str) -> tuple[Path, ...]:
        """One path, a list of paths, or a glob pattern (e.g. 'yellow_tripdata_2015-*.parquet'), sorted."""
        value = self.get(name)
        patterns = [value] if isinstance(value, str) else value
        if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
            raise self.error(name, f"expected a path, a glob pattern or a list of them, got {value!r}")
        out: list[Path] = []
        for pattern in patterns:
            path = Path(pattern).expanduser()
            path = path if path.is_absolute() else self.base_dir / path
            if not self.check_files:
                out.append(path)
            elif any(ch in pattern for ch in "*?["):
                matches = sorted(path.parent.glob(path.name))
                if not matches:
                    raise self.error(name, f"pattern {path} matches no file")
                out.extend(matches)
            elif path.is_file():
                out.append(path)
            else:
                raise self.error(name, f"file {path} does not exist")
        return tuple(out)

    def str_list(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self.get(name, default)
        if value is default and default is not _REQUIRED:
            return value
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            raise self.error(name, f"expected a list of strings, got {value!r}")
        return tuple(str(v) for v in value)

    def section(self, name: str, required: bool = False) -> "_Section | None":
        self.used.add(name)
        if self.data.get(name) is None:
            if required:
                raise self.error(name, "missing (required section)")
            return None
        return _Section(self.data[name], self.key(name), self.source, self.base_dir, self.check_files)

    def finish(self) -> None:
        """Reject keys nobody read: a misspelt key must not be silently ignored."""
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            known = sorted(self.used)
            raise ConfigError(
                f"{self.source}: unknown key(s) {[self.key(k) for k in unknown]} (known here: {known})"
            )


# ---- the config dataclasses -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BoundaryConfig:
    """The city outline: a polygon file (GeoJSON, GeoPackage, Shapefile; features merged) or a lon/lat box."""

    file: Path | None = None
    layer: str | None = None
    where: tuple[str, tuple[str, ...]] | None = None  # (column, values): keep only these features, e.g. one borough
    bbox: tuple[float, float, float, float] | None = None  # (min_lon, min_lat, max_lon, max_lat)


@dataclass(frozen=True)
class OsmPoisConfig:
    file: Path
    taxonomy: Path = DEFAULT_OSM_TAXONOMY
    unmapped: str = "drop"  # drop | other (kept as 'other;<key>_<value>')
    text_exclude: tuple[str, ...] = ()  # tag keys (or 'prefix:*') left out of the POI text, besides the defaults
    location_index: str = "flex_mem"  # osmium node-location store; 'dense_file_array,<file>' for country extracts


@dataclass(frozen=True)
class TablePoisConfig:
    file: Path
    lon: str
    lat: str
    category: str
    category2: str | None = None  # a second-level column when the first holds only level 1
    category_map: Path | None = None  # CSV source,level1,level2 mapping the file's categories to the taxonomy
    name: str | None = None
    text: str | None = None
    n_comments: str | None = None
    poi_id: str | None = None
    group_rows_by: tuple[str, ...] = ()  # rows sharing these columns are one POI (exports with one row per review)
    separator: str = ","


@dataclass(frozen=True)
class PoisConfig:
    osm: OsmPoisConfig | None = None
    table: TablePoisConfig | None = None


@dataclass(frozen=True)
class ZonesConfig:
    file: Path
    id_column: str
    layer: str | None = None
    point: str = "random"  # random: a seeded uniform point inside the zone per trip | representative: one fixed point
    pool_size: int = 4096  # random points drawn per zone, from which each trip picks one


@dataclass(frozen=True)
class TripsConfig:
    files: tuple[Path, ...]
    start_time: str
    origin_lon: str | None = None
    origin_lat: str | None = None
    dest_lon: str | None = None
    dest_lat: str | None = None
    origin_zone: str | None = None
    dest_zone: str | None = None
    zones: ZonesConfig | None = None
    end_time: str | None = None
    trip_id: str | None = None
    time_format: str | None = None
    chunk_rows: int = 1_000_000
    separator: str = ","

    @property
    def by_zone(self) -> bool:
        return self.zones is not None


TRAJECTORY_FIELDS = ("vehicle_id", "time", "lon", "lat")


@dataclass(frozen=True)
class TrajectoriesConfig:
    folder: Path
    pattern: str = "*.txt"
    columns: tuple[str, ...] = TRAJECTORY_FIELDS  # the files' columns in order; 'skip' for ones to ignore
    separator: str = ","
    header: bool = False
    time_format: str | None = "%Y-%m-%d %H:%M:%S"
    files_per_chunk: int = 256


@dataclass(frozen=True)
class WebTilesConfig:
    folder: Path
    zoom: int
    pattern: str = "{z}/{x}/{y}.png"
    scheme: str = "xyz"  # xyz (y from the north, OSM/Google) | tms (y from the south)


@dataclass(frozen=True)
class RemoteSensingConfig:
    geotiff: Path | None = None
    web_tiles: WebTilesConfig | None = None
    tile_pixels: int = 64
    ground_resolution_m: float | None = None  # None: the tile spans the hexagon's width (2 x edge length)
    bands: tuple[int, ...] = (1, 2, 3)
    rescale: str | tuple[float, float] | None = None  # None (uint8 as is) | 'percentile' | (low, high)
    min_coverage: float = 0.5  # tiles with less valid (non-nodata) area are dropped
    resampling: str = "bilinear"


@dataclass(frozen=True)
class StreetViewConfig:
    metadata: Path
    folder: Path
    path: str = "path"
    lon: str = "lon"
    lat: str = "lat"
    heading: str | None = None
    image_id: str | None = None
    panoramas: bool = False  # split each equirectangular panorama into four 90-degree views, as MuseCL did
    max_size: int | None = None  # downscale so the longer side is at most this many pixels
    separator: str = ","


@dataclass(frozen=True)
class IndicatorConfig:
    name: str
    kind: str  # points | raster | polygons | bundle
    transform: str = "log1p"
    description: str = ""
    unit: str = ""
    file: Path | None = None
    # points
    lon: str | None = None
    lat: str | None = None
    weight: str | None = None
    separator: str = ","
    chunk_rows: int = 1_000_000
    # raster
    band: int = 1
    # polygons
    column: str | None = None
    layer: str | None = None
    quantity: str = "intensive"  # intensive (densities, rates: area-weighted mean) | extensive (counts: shared by area)
    # raster and polygons: regions the data does not cover
    missing: str = "nearest"
    # bundle
    of: str | None = None


@dataclass(frozen=True)
class CityConfig:
    """One city build: where the city is, at which H3 resolution, and every input file."""

    name: str
    h3_resolution: int
    boundary: BoundaryConfig
    pois: PoisConfig
    remote_sensing: RemoteSensingConfig
    street_view: StreetViewConfig
    indicators: tuple[IndicatorConfig, ...]
    trips: TripsConfig | None = None
    trajectories: TrajectoriesConfig | None = None
    local_crs: str = "auto"  # projected CRS for metric work (tiles, areas); auto: the UTM zone of the boundary
    workers: int = 1  # threads for image decoding/encoding
    source: str = "<dict>"  # the config file (for messages)
    base_dir: Path = Path(".")  # relative paths of the config resolve against this folder
    raw: dict = field(default_factory=dict, compare=False, repr=False)


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
    top = _Section(data, "", source, Path(base_dir), check_files)
    name = top.str("name")
    resolution = top.int("h3_resolution")
    if not 0 <= resolution <= 15:
        raise top.error("h3_resolution", f"expected 0..15, got {resolution}")
    config = CityConfig(
        name=name,
        h3_resolution=resolution,
        local_crs=top.str("local_crs", "auto"),
        workers=top.int("workers", 1, minimum=1),
        boundary=_boundary(top.section("boundary", required=True)),
        pois=_pois(top.section("pois", required=True)),
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
    if config.trips is None and config.trajectories is None:
        raise ConfigError(f"{source}: give 'trips' or 'trajectories' (or both): MuseCL needs mobility data")
    return config


def _boundary(s: _Section) -> BoundaryConfig:
    if s.has("file") == s.has("bbox"):
        raise s.error("file", "give exactly one of 'file' (a polygon file) and 'bbox' ([min_lon, min_lat, max_lon, max_lat])")
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
    out = BoundaryConfig(file=s.file("file", None), layer=s.str("layer", None), where=where, bbox=bbox)
    s.finish()
    return out


def _pois(s: _Section) -> PoisConfig:
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
        )
        c.finish()
        t.finish()
    s.finish()
    if osm is None and table is None:
        raise s.error("osm", "give 'osm' (an .osm.pbf extract) or 'table' (a POI CSV/Parquet), or both")
    return PoisConfig(osm=osm, table=table)


def _trips(s: _Section | None) -> TripsConfig | None:
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
    )
    c.finish()
    s.finish()
    return out


def _trajectories(s: _Section | None) -> TrajectoriesConfig | None:
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
    )
    s.finish()
    return out


def _remote_sensing(s: _Section) -> RemoteSensingConfig:
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
    geotiff = s.file("geotiff", None)
    if (geotiff is None) == (web is None):
        raise s.error("geotiff", "give exactly one of 'geotiff' (a georeferenced image) and 'web_tiles' (a tile folder)")
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


def _street_view(s: _Section) -> StreetViewConfig:
    metadata = s.file("metadata")
    c = s.section("columns") or _Section({}, s.key("columns"), s.source, s.base_dir, s.check_files)
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
    )
    c.finish()
    s.finish()
    return out


def _indicators(s: _Section) -> tuple[IndicatorConfig, ...]:
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
            ind = IndicatorConfig(**common, file=spec.file("file"), lon=spec.str("lon"), lat=spec.str("lat"),
                                  weight=spec.str("weight", None), separator=spec.str("separator", ","),
                                  chunk_rows=spec.int("chunk_rows", 1_000_000, minimum=1))
        elif kind == "raster":
            ind = IndicatorConfig(**common, file=spec.file("file"), band=spec.int("band", 1, minimum=1),
                                  missing=spec.choice("missing", MISSING_POLICIES, "nearest"))
        elif kind == "polygons":
            ind = IndicatorConfig(**common, file=spec.file("file"), column=spec.str("column"),
                                  layer=spec.str("layer", None),
                                  quantity=spec.choice("quantity", ("intensive", "extensive"), "intensive"),
                                  missing=spec.choice("missing", MISSING_POLICIES, "nearest"))
        else:
            ind = IndicatorConfig(**common, of=spec.choice("of", BUNDLE_INDICATORS))
        spec.finish()
        out.append(ind)
    s.finish()
    return tuple(out)
