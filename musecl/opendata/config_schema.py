"""The city config's schema: the frozen dataclasses a city config parses into, and the values its keys allow.

One dataclass per config section (boundary, POIs, trips, trajectories, remote sensing, street view, indicators) with
its defaults, so the readers receive typed, already-checked settings. Nothing here reads YAML or touches the file
system; :mod:`musecl.opendata.config` fills these from a config file, and the readers import them from there.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_OSM_TAXONOMY = Path(__file__).with_name("osm_poi_taxonomy.csv")

TRANSFORMS = ("identity", "log1p")
INDICATOR_KINDS = ("points", "raster", "polygons", "bundle")
BUNDLE_INDICATORS = ("poi_count", "comment_count", "trip_count", "mobility_count")
MISSING_POLICIES = ("nearest", "zero", "error", "drop")  # drop: the region leaves the bundle (counted under 'regions')
POINT_AGGREGATES = ("sum", "nearest", "mean", "area_weighted")
SOURCE_CELLS = ("voronoi", "h3")
NON_SQUARE = ("crop", "pad", "error")
REGION_MODALITIES = ("rs", "sv", "pois")  # what `regions.keep` may require of a region


@dataclass(frozen=True)
class BoundaryConfig:
    """The city outline: a polygon file (GeoJSON, GeoPackage, Shapefile; features merged) or a lon/lat box."""

    file: Path | None = None
    layer: str | None = None
    where: tuple[str, tuple[str, ...]] | None = None  # (column, values): keep only these features, e.g. one borough
    bbox: tuple[float, float, float, float] | None = None  # (min_lon, min_lat, max_lon, max_lat)
    crs: str | None = None  # the file's (or bbox's) coordinates; overrides the file's own CRS (musecl.opendata.crs)


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
    crs: str | None = None  # of lon/lat: None/EPSG:4326, GCJ-02, BD-09 or any pyproj CRS (x/y columns)


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
    crs: str | None = None  # of the coordinate columns (not of the zone file, which carries its own)

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
    crs: str | None = None


@dataclass(frozen=True)
class WebTilesConfig:
    folder: Path
    zoom: int
    pattern: str = "{z}/{x}/{y}.png"
    scheme: str = "xyz"  # xyz (y from the north, OSM/Google) | tms (y from the south)


@dataclass(frozen=True)
class TilesTableConfig:
    """Pre-cut tiles released per region: a table of (region point or H3 id, image path relative to the table)."""

    table: Path
    path: str = "path"
    lon: str | None = None
    lat: str | None = None
    region_id: str | None = None  # an H3 cell id (any case; a finer cell is mapped to its parent)
    crs: str | None = None  # of lon/lat
    non_square: str = "crop"  # crop (centre crop) | pad (black borders) | error
    separator: str = ","


@dataclass(frozen=True)
class RemoteSensingConfig:
    geotiff: Path | None = None
    web_tiles: WebTilesConfig | None = None
    tiles: TilesTableConfig | None = None
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
    crs: str | None = None  # of lon/lat in the metadata


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
    aggregate: str = "sum"  # sum (events, or weight summed) | nearest | mean | area_weighted (of `value`)
    value: str | None = None  # the value column for nearest, mean and area_weighted
    header: bool = True  # false: the file has no header row; `columns` names its columns in order
    columns: tuple[str, ...] = ()
    source_cells: str = "voronoi"  # area_weighted: the source cells rebuilt as Voronoi cells or H3 hexagons
    source_h3_resolution: int | None = None  # area_weighted with source_cells h3
    crs: str | None = None  # of lon/lat (points) or overriding the file's CRS (polygons)
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
    pois: PoisConfig | None  # None: a city without POIs
    remote_sensing: RemoteSensingConfig
    street_view: StreetViewConfig
    indicators: tuple[IndicatorConfig, ...]
    trips: TripsConfig | None = None
    trajectories: TrajectoriesConfig | None = None
    regions: tuple[str, ...] = ("rs", "sv")  # modalities every kept region must have (`regions.keep`)
    local_crs: str = "auto"  # projected CRS for metric work (tiles, areas); auto: the UTM zone of the boundary
    workers: int = 1  # threads for image decoding/encoding
    source: str = "<dict>"  # the config file (for messages)
    base_dir: Path = Path(".")  # relative paths of the config resolve against this folder
    raw: dict = field(default_factory=dict, compare=False, repr=False)
