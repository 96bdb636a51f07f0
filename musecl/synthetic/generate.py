"""Generate a synthetic city bundle: frame -> latent fields -> POIs, mobility, images, indicators -> files.

Every random stream is seeded from (seed, component code), and every image from (seed, kind, index), so the bundle is
byte-identical for the same config and seed whatever the number of rendering workers.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.data import schema
from musecl.data.schema import REGION_ID
from musecl.synthetic.cameras import remote_sensing_extent_m, remote_sensing_tiles, street_view_points
from musecl.synthetic.frame import CityFrame, RegionSampler, build_frame
from musecl.synthetic.indicators import INDICATOR_SPECS, generate_indicators
from musecl.synthetic.latents import LATENT_NAMES, LatentField, build_latent_field, region_latents
from musecl.synthetic.mobility import centre_distances, generate_trajectories, generate_trips
from musecl.synthetic.pois import generate_pois
from musecl.synthetic.presets import SyntheticCityConfig, check_config

# Component codes of the random streams (never reuse or renumber: the bundle of a given seed would change).
FRAME, LATENTS, POIS, TRIPS, TAXIS, INDICATORS, STREET_POINTS, CAPTIONS, RS_TILES = 1, 2, 3, 4, 5, 6, 7, 8, 9
KIND_REMOTE_SENSING, KIND_STREET_VIEW = 101, 102
KIND_MODALITY = {KIND_REMOTE_SENSING: "rs", KIND_STREET_VIEW: "sv"}
EXTRA_LATENTS = ("land_fraction",)  # also in latents.parquet: share of the hexagon on land inside the boundary
INLINE_RENDER_BELOW = 64  # fewer images than this render in-process: a worker pool's start-up would cost more


def generate_city(
    config: SyntheticCityConfig,
    out_dir: str | Path,
    seed: int,
    progress: bool = True,
    workers: int | None = None,
    modalities: Any = None,
) -> dict[str, Any]:
    """Write a complete synthetic city bundle to `out_dir` (atomically) and return its counts and stage timings.

    `workers` (default: the CPUs this process may use) only sets how many processes render images; it never changes
    the output. `modalities` (params.yaml `data.synthetic.modalities`; default all of rs, sv, poi, mobility) leaves the
    others out of the bundle: the city is generated in full (the same random streams, so the same indicators), and the
    tables and images of a left-out modality are not written (nor its captions); city.json records the choice.
    """
    from musecl.storage import atomic_dir

    if not isinstance(config, SyntheticCityConfig):
        raise TypeError(f"generate_city: config must be a SyntheticCityConfig (see musecl.synthetic.presets.preset), "
                        f"got {type(config).__name__}")
    check_config(config)
    seed = _check_seed(seed)
    keep = check_modalities(modalities)
    timings: dict[str, float] = {}
    clock = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 3)
        clock = now

    city = leave_out(build_city_tables(config, seed, lap), keep)
    with atomic_dir(out_dir) as tmp:
        counts = write_tables(city, tmp)
        lap("write_tables")
        facts, captions = render_images(city, tmp, seed, progress=progress, workers=workers)
        lap("render_images")
        write_captions(facts, captions, tmp)
        lap("write_captions")
        write_city_json(city, tmp, seed, counts, keep)
    timings["total"] = round(sum(timings.values()), 3)
    return {"counts": counts, "timings_s": timings, "out_dir": str(Path(out_dir))}


def city_latent_field(config: SyntheticCityConfig, seed: int) -> LatentField:
    """The latent rasters of the city `generate_city(config, ..., seed)` writes (rebuilt in about a second), e.g. to
    map the ground truth or to render extra images."""
    seed = _check_seed(seed)
    frame = build_frame(config, np.random.default_rng([seed, FRAME]))
    return build_latent_field(config, frame, np.random.default_rng([seed, LATENTS]))


def check_modalities(modalities: Any) -> tuple[str, ...]:
    """The modalities to write (`schema.MODALITIES` order); None = all. Errors name the key and the allowed values."""
    allowed = tuple(schema.MODALITIES)
    if modalities is None:
        return allowed
    if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):
        raise ValueError(f"data.synthetic.modalities must be a list of {list(allowed)}, got {modalities!r}")
    unknown = [m for m in modalities if m not in allowed]
    if unknown:
        raise ValueError(f"data.synthetic.modalities: unknown modality {unknown}; expected some of {list(allowed)}")
    if not modalities:
        raise ValueError(f"data.synthetic.modalities is empty; a city needs at least one of {list(allowed)}")
    return tuple(m for m in allowed if m in modalities)


def leave_out(city: "SyntheticCity", keep: tuple[str, ...]) -> "SyntheticCity":
    """The city without the tables of the modalities not in `keep` (None for POIs/mobility, empty image tables)."""
    if set(keep) == set(schema.MODALITIES):
        return city
    changes: dict[str, Any] = {}
    if "poi" not in keep:
        changes["pois"] = None
    if "mobility" not in keep:
        changes.update(trips=None, trajectories=None)
    for modality, table in (("rs", "remote_sensing"), ("sv", "street_view")):
        if modality not in keep:
            changes[table] = getattr(city, table).iloc[:0]
    return dataclasses.replace(city, **changes)


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer (params.yaml 'seed'), got {seed!r}")
    return int(seed)


@dataclasses.dataclass
class SyntheticCity:
    """Everything generated for one city, before it is written."""

    config: SyntheticCityConfig
    frame: CityFrame
    field: LatentField
    boundary: Any  # shapely Polygon, lon/lat
    regions: Any  # GeoDataFrame
    latents: pd.DataFrame  # region_id, LATENT_NAMES, land_fraction, n_cells
    pois: pd.DataFrame
    trips: pd.DataFrame
    trajectories: pd.DataFrame
    indicators: pd.DataFrame
    remote_sensing: pd.DataFrame
    street_view: pd.DataFrame
    rs_extent_m: float


def build_city_tables(config: SyntheticCityConfig, seed: int, lap=lambda name: None) -> SyntheticCity:
    """All tables of a city in memory (no images yet)."""
    import h3

    from musecl.data.regions import assign_points_to_regions, regions_from_boundary

    seed = _check_seed(seed)

    def rng(component: int) -> np.random.Generator:
        return np.random.default_rng([seed, component])

    frame = build_frame(config, rng(FRAME))
    boundary = frame.boundary_lonlat()
    regions = regions_from_boundary(boundary, config.h3_resolution)
    lap("frame")
    field = build_latent_field(config, frame, rng(LATENTS))
    latents = region_latents(field, frame, regions, config.h3_resolution)
    lap("latents")

    water = lambda lon, lat: field.sample(lon, lat)["water"]  # noqa: E731
    sampler = RegionSampler(frame, regions, config.h3_resolution, water_at=water)
    pois, poi_region = generate_pois(latents, sampler, config.pois_per_region, rng(POIS))
    lap("pois")

    area_km2 = h3.average_hexagon_area(config.h3_resolution, "km^2")
    dist = centre_distances(frame, regions, area_km2)
    trips = generate_trips(config, frame, latents, dist, sampler, rng(TRIPS)) if config.n_trips > 0 else None
    lap("trips")
    trajectories = None
    if config.n_taxis > 0:
        trajectories = generate_trajectories(config, frame, latents, dist, sampler, rng(TAXIS))
    lap("trajectories")

    ids = regions[REGION_ID].to_numpy()
    if trajectories is not None:
        fix_region = assign_points_to_regions(trajectories["lon"].to_numpy(), trajectories["lat"].to_numpy(), ids,
                                              config.h3_resolution)
        fix_idx = pd.Index(ids).get_indexer(fix_region)  # -1 for fixes outside every region
        vehicle_codes = pd.factorize(trajectories["vehicle_id"])[0]
    else:
        fix_idx = vehicle_codes = np.zeros(0, dtype=np.int64)
    indicators = generate_indicators(
        latents, poi_region, pois["n_comments"].to_numpy(), fix_idx, vehicle_codes, rng(INDICATORS)
    )
    lap("indicators")

    street_view = street_view_points(config, frame, latents, sampler, rng(STREET_POINTS))
    remote_sensing = remote_sensing_tiles(config, regions, sampler, rng(RS_TILES))
    lap("image_points")
    return SyntheticCity(
        config=config,
        frame=frame,
        field=field,
        boundary=boundary,
        regions=regions,
        latents=latents,
        pois=pois,
        trips=trips,
        trajectories=trajectories,
        indicators=indicators,
        remote_sensing=remote_sensing,
        street_view=street_view,
        rs_extent_m=remote_sensing_extent_m(regions, frame),
    )


# ---- writing ---------------------------------------------------------------------------------------------------------
def write_tables(city: SyntheticCity, root: Path) -> dict[str, int]:
    """Write every table of the bundle (not the images, not city.json) and return row counts."""
    from musecl.storage import write_parquet, write_text

    root = Path(root)
    feature = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"name": city.config.name},
                "geometry": {"type": "Polygon", "coordinates": [np.asarray(city.boundary.exterior.coords).tolist()]},
            }
        ],
    }
    write_text(json.dumps(feature) + "\n", root / schema.BOUNDARY_FILE)
    write_parquet(city.regions, root / schema.REGIONS_FILE)
    if city.pois is not None:
        write_parquet(city.pois, root / schema.POIS_FILE)
    if city.trips is not None:
        write_parquet(city.trips, root / schema.TRIPS_FILE)
    if city.trajectories is not None:
        write_parquet(city.trajectories, root / schema.TRAJECTORIES_FILE)
    write_parquet(city.indicators, root / schema.INDICATORS_FILE)
    write_parquet(city.latents[[REGION_ID, *LATENT_NAMES, *EXTRA_LATENTS]], root / schema.LATENTS_FILE)
    for table, file in ((city.remote_sensing, schema.REMOTE_SENSING_FILE), (city.street_view, schema.STREET_VIEW_FILE)):
        if len(table):  # a left-out image modality has no rows (`leave_out`): no file
            write_parquet(table, root / file)
    return {
        "regions": len(city.regions),
        "pois": 0 if city.pois is None else len(city.pois),
        "trips": 0 if city.trips is None else len(city.trips),
        "trajectory_points": 0 if city.trajectories is None else len(city.trajectories),
        "taxis": 0 if city.trajectories is None else int(city.trajectories["vehicle_id"].nunique()),
        "remote_sensing_images": len(city.remote_sensing),
        "street_view_images": len(city.street_view),
    }


def write_captions(facts: pd.DataFrame, captions: pd.DataFrame, root: Path) -> None:
    """Write the true facts of every image (`scene_facts.parquet`) and its simulated captions (`captions.parquet`)."""
    from musecl.storage import write_parquet

    if len(facts):  # a city without images has no captions
        write_parquet(facts, Path(root) / schema.SCENE_FACTS_FILE)
        write_parquet(captions, Path(root) / schema.CAPTIONS_FILE)


def write_city_json(city: SyntheticCity, root: Path, seed: int, counts: dict[str, int],
                    modalities: tuple[str, ...] = tuple(schema.MODALITIES)) -> None:
    from musecl import __version__
    from musecl.data.schema import FORMAT_VERSION, WGS84_CRS
    from musecl.storage import write_json

    config = dataclasses.asdict(city.config)
    meta = {
        "format_version": FORMAT_VERSION,
        "name": city.config.name,
        "h3_resolution": int(city.config.h3_resolution),
        "crs": WGS84_CRS,
        "source": "synthetic",
        "generator": {"package": "musecl.synthetic", "version": __version__, "preset": city.config.preset,
                      "config": config},
        "seed": seed,
        "indicators": INDICATOR_SPECS,
        "latents": [*LATENT_NAMES, *EXTRA_LATENTS],
        "counts": counts,
        "images": {
            "remote_sensing": {"size_px": int(city.config.rs_size_px), "extent_m": city.rs_extent_m},
            "street_view": {"size_px": int(city.config.sv_size_px)},
        },
    }
    if set(modalities) != set(schema.MODALITIES):  # recorded only when some were left out (the default is unchanged)
        meta["generator"]["modalities"] = list(modalities)
    write_json(meta, Path(root) / schema.CITY_FILE)


# ---- images ----------------------------------------------------------------------------------------------------------
_WORKER: dict[str, Any] = {}


def usable_cpus() -> int:
    """CPUs this process may run on (respects affinity masks / container limits where the OS reports them)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _init_worker(field: LatentField, root: str, seed: int, rs_size: int, rs_extent_m: float, sv_size: int) -> None:
    from threadpoolctl import threadpool_limits

    # The renderers' many small matrix products (`render.helpers._upsample`) run 30-300x slower with a multi-threaded
    # BLAS than with one thread (thread start-up per call, and workers x threads > cores): one thread per worker.
    threadpool_limits(limits=1, user_api="blas")
    _WORKER.update(field=field, root=Path(root), seed=seed, rs_size=rs_size, rs_extent_m=rs_extent_m, sv_size=sv_size)


def _render_batch(batch: tuple[int, np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[str]]
                  ) -> tuple[int, list[tuple]]:
    """Render and write one batch of images of one kind (runs in a worker or in-process); returns the number of
    images and, per image, (kind, index, true facts as text, its captions: (captioner, caption, rates) each)."""
    from PIL import Image

    from musecl.data.captions import facts_to_text
    from musecl.synthetic.captioners import caption_image
    from musecl.synthetic.render import render_remote_sensing_labelled, render_street_view_labelled
    from musecl.synthetic.scene_facts import image_latents, scene_facts

    kind, index, lon, lat, heading, paths = batch
    w = _WORKER
    modality = KIND_MODALITY[kind]
    records = []
    for i, x, y, h, rel in zip(index.tolist(), lon.tolist(), lat.tolist(), heading.tolist(), paths):
        rng = np.random.default_rng([w["seed"], kind, i])
        if kind == KIND_REMOTE_SENSING:
            img, labels = render_remote_sensing_labelled(w["field"], x, y, w["rs_size"], w["rs_extent_m"], rng)
            size = w["rs_size"]
        else:
            img, labels = render_street_view_labelled(w["field"], x, y, h, w["sv_size"], rng)
            size = w["sv_size"]
        img = np.asarray(img)
        if img.shape != (size, size, 3) or img.dtype != np.uint8:
            raise ValueError(f"renderer returned {img.shape} {img.dtype} for {rel}; expected ({size}, {size}, 3) uint8")
        Image.fromarray(img).save(w["root"] / rel, format="PNG", compress_level=6)
        latents = image_latents(w["field"], x, y, modality, heading=h, extent_m=w["rs_extent_m"])
        truth = scene_facts(labels, latents, modality)
        captions = caption_image(truth, modality, lambda c: np.random.default_rng([w["seed"], CAPTIONS, c, kind, i]))
        records.append((kind, i, facts_to_text(truth), captions))
    return len(paths), records


def render_images(
    city: SyntheticCity, root: Path, seed: int, progress: bool = True, workers: int | None = None, batch_size: int = 64
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Render every remote-sensing tile and street-view image of the index tables into `root`; return the tables of
    their true facts and their simulated captions (`caption_tables`)."""
    from tqdm import tqdm

    root = Path(root)
    for folder, table in ((schema.REMOTE_SENSING_DIR, city.remote_sensing), (schema.STREET_VIEW_DIR, city.street_view)):
        if len(table):
            (root / folder).mkdir(parents=True, exist_ok=True)
    batches = []
    for kind, table in ((KIND_REMOTE_SENSING, city.remote_sensing), (KIND_STREET_VIEW, city.street_view)):
        heading = table["heading"].to_numpy(dtype=np.float64) if "heading" in table else np.zeros(len(table))
        for start in range(0, len(table), batch_size):
            sl = slice(start, start + batch_size)
            batches.append((kind, np.arange(len(table))[sl], table["lon"].to_numpy()[sl], table["lat"].to_numpy()[sl],
                            heading[sl], table["path"].tolist()[sl]))
    total = len(city.remote_sensing) + len(city.street_view)
    init = (city.field, str(root), seed, city.config.rs_size_px, city.rs_extent_m, city.config.sv_size_px)
    workers = usable_cpus() if workers is None else int(workers)
    bar = tqdm(total=total, desc="rendering images", unit="img", disable=not progress)
    records: list[tuple] = []
    try:
        if workers <= 1 or total < INLINE_RENDER_BELOW:
            from threadpoolctl import threadpool_limits

            with threadpool_limits(limits=1, user_api="blas"):  # as in the workers (`_init_worker`), then restored
                _init_worker(*init)
                for batch in batches:
                    done, found = _render_batch(batch)
                    records += found
                    bar.update(done)
        else:
            import multiprocessing as mp

            # fork where the OS has it: spawn would re-run the caller's __main__ (a script without a main guard
            # crashes) and re-import everything; the workers use only numpy/scipy/Pillow, never torch threads.
            method = "fork" if "fork" in mp.get_all_start_methods() else "spawn"
            with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=init) as pool:
                for done, found in pool.imap_unordered(_render_batch, batches):
                    records += found
                    bar.update(done)
    finally:
        bar.close()
        _WORKER.clear()
    return caption_tables(city, records)


def caption_tables(city: SyntheticCity, records: list[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`scene_facts.parquet` and `captions.parquet` from the workers' records, in image-table order (the pool returns
    batches in any order), captioners in `CAPTIONERS` order."""
    from musecl.contract import IMAGE_TABLES

    records = sorted(records, key=lambda r: (r[0], r[1]))
    ids = {kind: getattr(city, IMAGE_TABLES[m])["image_id"].to_numpy() for kind, m in KIND_MODALITY.items()}
    image_id = [ids[kind][i] for kind, i, _, _ in records]
    modality = [KIND_MODALITY[kind] for kind, _, _, _ in records]
    facts = pd.DataFrame({"image_id": image_id, "modality": modality, "facts": [r[2] for r in records]})
    per_image = [len(r[3]) for r in records]
    rows = [row for r in records for row in r[3]]
    captions = pd.DataFrame({
        "image_id": np.repeat(np.array(image_id, dtype=object), per_image),
        "modality": np.repeat(np.array(modality, dtype=object), per_image),
        "captioner": [row[0] for row in rows],
        "caption": [row[1] for row in rows],
        "hallucination_rate": np.array([row[2] for row in rows], dtype=np.float64),
        "omission_rate": np.array([row[3] for row in rows], dtype=np.float64),
    })
    return facts, captions
