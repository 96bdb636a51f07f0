"""`build_bundle`: every reader in turn, from one city config to one city bundle, written atomically.

Order matters once: the validator (and every later stage) needs at least one remote-sensing tile and one street-view
image per region, so images are cut first and the cells that end up without either are dropped from the regions
(counted in the report, like every other drop) before the POIs, trips, trajectories and indicators are assigned.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd

from musecl.opendata.boundary import boundary_frame, local_metric_crs, read_boundary
from musecl.opendata.config import CityConfig, load_city_config
from musecl.opendata.indicators import BundleCounts, compute_indicators
from musecl.opendata.points import RegionAssigner
from musecl.opendata.report import DUPLICATE, BuildError, BuildReport, ReaderReport
from musecl.data import schema
from musecl.data.regions import regions_from_boundary, regions_frame
from musecl.data.schema import REGION_ID, WGS84_CRS

NO_RS_TILE = "no remote-sensing tile"
NO_STREET_VIEW = "no street-view image"


def build_bundle(
    config_path: str | Path | CityConfig, out_dir: str | Path, seed: int, progress: bool = True
) -> BuildReport:
    """Build the city bundle described by a city config (YAML path or parsed `CityConfig`) at `out_dir`.

    `out_dir` is replaced as a whole, and only when everything is written. `seed` drives the one random choice a
    build makes (points inside zones for zone-based trips). Returns the report of what each reader kept and dropped;
    raises `BuildError` naming the file, key or column when an input is unusable.
    """
    from musecl.storage import atomic_dir

    config = config_path if isinstance(config_path, CityConfig) else load_city_config(config_path)
    started = time.perf_counter()
    out_dir = Path(out_dir)
    res = config.h3_resolution
    report = BuildReport(config.name, out_dir, res)

    boundary, boundary_report = read_boundary(config.boundary)
    report.add(boundary_report)
    try:
        cells = regions_from_boundary(boundary, res)
    except ValueError as err:
        raise BuildError(f"{config.source}: {err}") from err
    local_crs = local_metric_crs(boundary, config.local_crs)

    with atomic_dir(out_dir) as tmp:
        from musecl.opendata.remote_sensing import cut_remote_sensing, tile_side_m
        from musecl.opendata.street_view import read_street_view

        rs_index, rs_report = cut_remote_sensing(config.remote_sensing, cells, local_crs, tmp, progress)
        report.add(rs_report)
        sv_index, sv_report = read_street_view(config.street_view, RegionAssigner(cells[REGION_ID], res), tmp,
                                               config.workers, progress)
        report.add(sv_report)
        regions, rs_index, sv_index, region_report = _regions_with_images(cells, rs_index, sv_index, res, tmp)
        report.add(region_report)
        report.n_regions = len(regions)
        assigner = RegionAssigner(regions[REGION_ID], res)

        pois = _read_pois(config, assigner, report, progress)
        counts = BundleCounts(pois=pois)
        if config.trips is not None:
            from musecl.opendata.trips import read_trips

            trips_report, trip_counts = read_trips(config.trips, assigner, tmp / schema.TRIPS_FILE, seed, progress)
            report.add(trips_report)
            counts.trip_origins, counts.trip_destinations = trip_counts.origins, trip_counts.destinations
        if config.trajectories is not None:
            from musecl.opendata.trajectories import read_trajectories

            traj_report, traj_counts = read_trajectories(config.trajectories, assigner,
                                                         tmp / schema.TRAJECTORIES_FILE, progress)
            report.add(traj_report)
            counts.taxi_entries, counts.taxi_exits = traj_counts.entries, traj_counts.exits
        indicators, indicator_reports, indicator_spec = compute_indicators(
            config.indicators, regions, assigner, local_crs, counts, progress)
        for r in indicator_reports:
            report.add(r)

        regions.to_parquet(tmp / schema.REGIONS_FILE, index=False)
        boundary_frame(boundary, config.name).to_file(tmp / schema.BOUNDARY_FILE, driver="GeoJSON")
        pois.to_parquet(tmp / schema.POIS_FILE, index=False)
        rs_index.to_parquet(tmp / schema.REMOTE_SENSING_FILE, index=False)
        sv_index.to_parquet(tmp / schema.STREET_VIEW_FILE, index=False)
        indicators.to_parquet(tmp / schema.INDICATORS_FILE, index=False)
        rs_extent_m, _ = tile_side_m(cells.to_crs(local_crs), config.remote_sensing)
        _write_city_json(config, tmp, seed, local_crs, rs_extent_m, indicator_spec, report,
                         {"pois": len(pois), "remote_sensing_images": len(rs_index),
                          "street_view_images": len(sv_index), "regions": len(regions)})
    report.seconds = time.perf_counter() - started
    return report


def _regions_with_images(cells, rs_index: pd.DataFrame, sv_index: pd.DataFrame, res: int, root: Path):
    """Keep the cells with a remote-sensing tile and a street-view image; delete the images of the others."""
    report = ReaderReport("regions", f"H3 cells at resolution {res} inside the boundary", read=len(cells))
    ids = cells[REGION_ID].to_numpy(dtype=object)
    has_rs = np.isin(ids, rs_index[REGION_ID].to_numpy(dtype=object))
    sv_region = RegionAssigner(ids, res).assign(sv_index["lon"].to_numpy(), sv_index["lat"].to_numpy())
    has_sv = np.zeros(len(ids), dtype=bool)
    has_sv[sv_region[sv_region >= 0]] = True
    report.drop(NO_RS_TILE, int((~has_rs).sum()))
    report.drop(NO_STREET_VIEW, int((has_rs & ~has_sv).sum()))
    keep = has_rs & has_sv
    report.kept = int(keep.sum())
    if not keep.any():
        raise BuildError("no region has both a remote-sensing tile and a street-view image: do the imagery and the "
                         "street-view metadata cover the boundary?")
    if not keep.all():
        report.note("every region needs a remote-sensing tile and a street-view image; the others are left out")
    kept_ids = ids[keep]
    rs_keep = rs_index[REGION_ID].isin(kept_ids).to_numpy()
    sv_keep = np.isin(sv_region, np.flatnonzero(keep))
    for rel in list(rs_index["path"][~rs_keep]) + list(sv_index["path"][~sv_keep]):
        (root / rel).unlink(missing_ok=True)
    regions = regions_frame(list(kept_ids))
    return (regions, rs_index[rs_keep].reset_index(drop=True), sv_index[sv_keep].reset_index(drop=True), report)


def _read_pois(config: CityConfig, assigner: RegionAssigner, report: BuildReport, progress: bool) -> pd.DataFrame:
    frames = []
    reports = []
    if config.pois.osm is not None:
        from musecl.opendata.pois_osm import read_osm_pois

        frame, r = read_osm_pois(config.pois.osm, assigner, progress)
        frames.append(frame)
        reports.append(report.add(r))
    if config.pois.table is not None:
        from musecl.opendata.pois_table import read_table_pois

        frame, r = read_table_pois(config.pois.table, assigner)
        # Ids from different sources may collide ('n1' in both); the table's rows lose, counted.
        if frames:
            clash = frame["poi_id"].isin(frames[0]["poi_id"]).to_numpy()
            r.drop(DUPLICATE, int(clash.sum()))
            r.kept -= int(clash.sum())
            frame = frame[~clash]
        frames.append(frame)
        reports.append(report.add(r))
    pois = pd.concat(frames, ignore_index=True)
    if "n_comments" in pois.columns:
        pois["n_comments"] = pois["n_comments"].fillna(0).astype("int64")
    if pois.empty:
        sources = "; ".join(f"{r.source}: read {r.read}, dropped {dict(r.dropped)}" for r in reports)
        raise BuildError(f"no POI kept inside the city's regions ({sources})")
    for col in ("poi_id", "category", "name", "text"):
        pois[col] = pois[col].astype("str")
    return pois


def _write_city_json(config: CityConfig, root: Path, seed: int, local_crs, rs_extent_m: float, indicators: dict,
                     report: BuildReport, counts: dict) -> None:
    from musecl import __version__
    from musecl.storage import write_json

    rs = config.remote_sensing
    meta = {
        "format_version": schema.FORMAT_VERSION,
        "name": config.name,
        "h3_resolution": config.h3_resolution,
        "crs": WGS84_CRS,
        "source": "build",
        "seed": int(seed),
        "local_crs": local_crs.to_string(),
        "indicators": indicators,
        "counts": counts,
        "images": {"remote_sensing": {"size_px": rs.tile_pixels, "extent_m": rs_extent_m},
                   "street_view": {"panoramas_split": config.street_view.panoramas}},
        "build": {"package": "musecl.opendata", "version": __version__, "config": Path(config.source).name,
                  "report": report.to_dict(relative_to=config.base_dir)},
    }
    write_json(meta, root / schema.CITY_FILE)
