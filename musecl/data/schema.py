"""The city bundle contract: file names, columns and constants shared by every stage.

A *city bundle* is a folder; the synthetic generator and the real-city builders both write it, and
:func:`musecl.data.validate.validate_bundle` checks it. `docs/data_format.md` documents the same contract for people.
"""
from __future__ import annotations

from dataclasses import dataclass

from musecl.contract import REGION_ID  # noqa: F401  (the key of every region table; re-exported here)

WGS84_CRS = "EPSG:4326"
FORMAT_VERSION = 1

# ---- files -------------------------------------------------------------------------------------------------------
CITY_FILE = "city.json"  # metadata (name, h3_resolution, indicator transforms, provenance)
BOUNDARY_FILE = "boundary.geojson"  # one (Multi)Polygon feature, WGS84
REGIONS_FILE = "regions.parquet"  # GeoParquet, one row per H3 cell
POIS_FILE = "pois.parquet"  # optional (the `poi` modality)
TRIPS_FILE = "trips.parquet"  # optional (the `mobility` modality: trips and/or trajectories)
TRAJECTORIES_FILE = "trajectories.parquet"  # optional
INDICATORS_FILE = "indicators.parquet"
REMOTE_SENSING_FILE = "remote_sensing.parquet"  # image index (optional: the `rs` modality)
STREET_VIEW_FILE = "street_view.parquet"  # image index (optional: the `sv` modality)
LATENTS_FILE = "latents.parquet"  # synthetic cities only: the ground-truth latent variables per region
CAPTIONS_FILE = "captions.parquet"  # optional: captions of the images (one row per image and captioner)
SCENE_FACTS_FILE = "scene_facts.parquet"  # synthetic cities only: the true facts of every image
REMOTE_SENSING_DIR = "images/remote_sensing"
STREET_VIEW_DIR = "images/street_view"


@dataclass(frozen=True)
class Column:
    name: str
    kind: str  # "str", "float", "int", "datetime", "geometry"
    description: str
    required: bool = True


@dataclass(frozen=True)
class Table:
    file: str
    columns: tuple[Column, ...]
    unique: tuple[str, ...] = ()  # columns whose values must be unique
    required: bool = True

    @property
    def required_columns(self) -> list[str]:
        return [c.name for c in self.columns if c.required]


REGIONS = Table(
    REGIONS_FILE,
    (
        Column(REGION_ID, "str", "H3 cell index (hex string) at the bundle's h3_resolution"),
        Column("geometry", "geometry", "the cell's hexagon, WGS84"),
        Column("lon", "float", "cell centre longitude"),
        Column("lat", "float", "cell centre latitude"),
    ),
    unique=(REGION_ID,),
)
POIS = Table(
    POIS_FILE,
    (
        Column("poi_id", "str", "unique POI id"),
        Column("lon", "float", "longitude, WGS84"),
        Column("lat", "float", "latitude, WGS84"),
        Column("category", "str", "two-level category 'level1;level2', e.g. 'food;restaurant'"),
        Column("name", "str", "POI name"),
        Column("text", "str", "free text: tags and review comments", required=False),
        Column("n_comments", "int", "number of review comments of the POI", required=False),
    ),
    unique=("poi_id",),
    required=False,
)
TRIPS = Table(
    TRIPS_FILE,
    (
        Column("trip_id", "str", "unique trip id"),
        Column("origin_lon", "float", "origin longitude"),
        Column("origin_lat", "float", "origin latitude"),
        Column("dest_lon", "float", "destination longitude"),
        Column("dest_lat", "float", "destination latitude"),
        Column("start_time", "datetime", "departure time"),
        Column("end_time", "datetime", "arrival time", required=False),
    ),
    unique=("trip_id",),
    required=False,
)
TRAJECTORIES = Table(
    TRAJECTORIES_FILE,
    (
        Column("vehicle_id", "str", "vehicle (taxi) id"),
        Column("time", "datetime", "GPS fix time"),
        Column("lon", "float", "longitude"),
        Column("lat", "float", "latitude"),
    ),
    required=False,
)
REMOTE_SENSING = Table(
    REMOTE_SENSING_FILE,
    (
        Column("image_id", "str", "unique image id"),
        Column(REGION_ID, "str", "the region the tile covers"),
        Column("path", "str", f"image path relative to the bundle, under {REMOTE_SENSING_DIR}/"),
    ),
    unique=("image_id",),
    required=False,
)
STREET_VIEW = Table(
    STREET_VIEW_FILE,
    (
        Column("image_id", "str", "unique image id"),
        Column("path", "str", f"image path relative to the bundle, under {STREET_VIEW_DIR}/"),
        Column("lon", "float", "camera longitude"),
        Column("lat", "float", "camera latitude"),
        Column("heading", "float", "camera heading in degrees clockwise from north, [0, 360)", required=False),
    ),
    unique=("image_id",),
    required=False,
)
INDICATORS = Table(
    INDICATORS_FILE,
    (Column(REGION_ID, "str", "region id; further columns: one float column per indicator, raw scale"),),
    unique=(REGION_ID,),
)
LATENTS = Table(
    LATENTS_FILE,
    (Column(REGION_ID, "str", "region id; further columns: one float column per latent variable"),),
    unique=(REGION_ID,),
    required=False,
)

CAPTIONS = Table(
    CAPTIONS_FILE,
    (
        Column("image_id", "str", "an image_id of the image table of `modality`"),
        Column("modality", "str", "'rs' (remote_sensing.parquet) or 'sv' (street_view.parquet)"),
        Column("captioner", "str", "who or what wrote the caption (a model name, 'human', a synthetic captioner)"),
        Column("caption", "str", "the caption text, non-empty"),
        Column("hallucination_rate", "float", "share of the caption's facts that are false, [0, 1] (synthetic only)",
               required=False),
        Column("omission_rate", "float", "share of the image's true facts the caption leaves out, [0, 1] (synthetic "
               "only)", required=False),
    ),
    required=False,
)
SCENE_FACTS = Table(
    SCENE_FACTS_FILE,
    (
        Column("image_id", "str", "an image_id of the image table of `modality`"),
        Column("modality", "str", "'rs' or 'sv'"),
        Column("facts", "str", "the image's true facts, musecl.data.captions.facts_to_text"),
    ),
    required=False,
)

TABLES: dict[str, Table] = {
    "regions": REGIONS,
    "pois": POIS,
    "trips": TRIPS,
    "trajectories": TRAJECTORIES,
    "remote_sensing": REMOTE_SENSING,
    "street_view": STREET_VIEW,
    "indicators": INDICATORS,
    "latents": LATENTS,
    "captions": CAPTIONS,
    "scene_facts": SCENE_FACTS,
}

# The four modalities a city may have, any non-empty combination of them (docs/data_format.md, "Modalities"): the
# tables that carry each one (mobility: trips and/or trajectories) and how messages name it. Regions and indicators are
# always required.
MODALITIES: dict[str, tuple[str, ...]] = {
    "rs": ("remote_sensing",),
    "sv": ("street_view",),
    "poi": ("pois",),
    "mobility": ("trips", "trajectories"),
}
MODALITY_NAMES = {"rs": "remote-sensing tiles", "sv": "street-view images", "poi": "POIs", "mobility": "mobility"}


def modality_files(modality: str) -> str:
    """The file(s) of a modality as messages name them, e.g. 'trips.parquet / trajectories.parquet'."""
    return " / ".join(TABLES[t].file for t in MODALITIES[modality])


# The paper's indicators (MuseCL Tables 1-2). A bundle may carry any subset and others; city.json names the transform
# applied before regression ("log1p" for all of these, as the paper's RMSE scale implies).
PAPER_INDICATORS = {
    "population_density": "PD",
    "housing_density": "HD",
    "mobility_count": "MC",
    "poi_count": "NP",
    "comment_count": "NC",
    "crime": "CR",
}
TRANSFORMS = ("identity", "log1p")
