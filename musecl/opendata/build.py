"""`build_bundle`: every reader in turn, from one city config to one city bundle, written atomically.

Order matters once: the regions must be fixed before the readers that stream into the bundle (trips, trajectories)
run. So images are cut first; `regions.keep` (default: a remote-sensing tile and a street-view image, what the
validator needs) removes the cells without the chosen modalities; POIs are read and, with `pois` in `regions.keep`,
cells without one go too; the indicators read from files are computed and the cells an indicator with `missing: drop`
has no value for go as well. Every removal is counted in the `regions` report by reason, and the removed cells'
images are deleted. Then trips, trajectories and the bundle's own indicators are assigned to the final regions.
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
        from musecl.opendata.indicators import external_indicators
        from musecl.opendata.remote_sensing import tile_side_m
        from musecl.opendata.street_view import read_street_view

        rs_index, rs_report = _remote_sensing(config, cells, local_crs, tmp, progress)
        report.add(rs_report)
        sv_index, sv_report = read_street_view(config.street_view, RegionAssigner(cells[REGION_ID], res), tmp,
                                               config.workers, progress)
        report.add(sv_report)
        kept = RegionSelection(cells, rs_index, sv_index, res, config.regions)
        report.add(kept.report)
        pois = _read_pois(config, RegionAssigner(kept.ids, res), report, progress)
        if pois is not None and "pois" in config.regions:
            kept.require_points("no POI", pois["lon"].to_numpy(), pois["lat"].to_numpy())
        file_values, indicator_reports = external_indicators(
            config.indicators, regions_frame(list(kept.ids)), RegionAssigner(kept.ids, res), local_crs, progress)
        for name, values in file_values.items():
            kept.require_values(f"no value of indicator {name} (missing: drop)", values)
        regions, rs_index, sv_index = kept.finish(rs_index, sv_index, tmp)
        report.n_regions = len(regions)
        assigner = RegionAssigner(regions[REGION_ID], res)
        pois = None if pois is None else _pois_in(pois, assigner, report)
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
        indicators, _, indicator_spec = compute_indicators(
            config.indicators, regions, assigner, local_crs, counts, progress, precomputed=file_values)
        for r in indicator_reports:
            report.add(r)

        regions.to_parquet(tmp / schema.REGIONS_FILE, index=False)
        boundary_frame(boundary, config.name).to_file(tmp / schema.BOUNDARY_FILE, driver="GeoJSON")
        if pois is not None:  # a city without POIs has no pois.parquet (the validator warns; stages skip)
            pois.to_parquet(tmp / schema.POIS_FILE, index=False)
        rs_index.to_parquet(tmp / schema.REMOTE_SENSING_FILE, index=False)
        sv_index.to_parquet(tmp / schema.STREET_VIEW_FILE, index=False)
        indicators.to_parquet(tmp / schema.INDICATORS_FILE, index=False)
        rs_extent_m, _ = tile_side_m(cells.to_crs(local_crs), config.remote_sensing)
        _write_city_json(config, tmp, seed, local_crs, rs_extent_m, indicator_spec, report,
                         {"pois": 0 if pois is None else len(pois), "remote_sensing_images": len(rs_index),
                          "street_view_images": len(sv_index), "regions": len(regions)})
    report.seconds = time.perf_counter() - started
    return report


def _remote_sensing(config: CityConfig, cells, local_crs, root: Path, progress: bool):
    if config.remote_sensing.tiles is not None:
        from musecl.opendata.tiles_table import read_tiles_table

        return read_tiles_table(config.remote_sensing, cells, config.h3_resolution, root, progress)
    from musecl.opendata.remote_sensing import cut_remote_sensing

    return cut_remote_sensing(config.remote_sensing, cells, local_crs, root, progress)


class RegionSelection:
    """Which H3 cells become regions: those with every modality of `regions.keep` (default: a remote-sensing tile and
    a street-view image), then those with a POI (when `pois` is kept) and with a value of every `missing: drop`
    indicator. Each removal is counted under its reason in the `regions` report; the images of removed cells are
    deleted."""

    def __init__(self, cells, rs_index: pd.DataFrame, sv_index: pd.DataFrame, res: int, keep: tuple[str, ...]):
        self.res = res
        self.cell_ids = cells[REGION_ID].to_numpy(dtype=object)
        self.report = ReaderReport("regions", f"H3 cells at resolution {res} inside the boundary",
                                   read=len(self.cell_ids))
        has_rs = np.isin(self.cell_ids, rs_index[REGION_ID].to_numpy(dtype=object))
        self.sv_region = RegionAssigner(self.cell_ids, res).assign(sv_index["lon"].to_numpy(),
                                                                    sv_index["lat"].to_numpy())
        has_sv = np.zeros(len(self.cell_ids), dtype=bool)
        has_sv[self.sv_region[self.sv_region >= 0]] = True
        self.keep = np.ones(len(self.cell_ids), dtype=bool)
        for modality, has, reason in (("rs", has_rs, NO_RS_TILE), ("sv", has_sv, NO_STREET_VIEW)):
            if modality in keep:
                self._remove(~has, reason)
        if not self.keep.any():
            needs = " and a ".join(_NAMES[m] for m in keep if m != "pois")
            raise BuildError(f"no region has a {needs}: do the imagery and the street-view metadata cover the "
                             "boundary?")
        kept_without = {m: int((self.keep & ~h).sum()) for m, h in (("rs", has_rs), ("sv", has_sv)) if m not in keep}
        self.report.note(f"regions.keep {list(keep)}: a region needs "
                         + (" and ".join(f"a {_NAMES[m]}" for m in keep) or "nothing") + "; cells without are left out")
        for m, n in kept_without.items():
            if n:
                self.report.warn(f"{n:,} kept regions have no {_NAMES[m]} ({m} not in regions.keep): their {m} "
                                 "embedding is filled by encoders.missing_regions, and the bundle passes the "
                                 "validator only where it accepts regions without such an image")

    @property
    def ids(self) -> np.ndarray:
        return self.cell_ids[self.keep]

    def _remove(self, lacking: np.ndarray, reason: str) -> None:
        self.report.drop(reason, int((self.keep & lacking).sum()))
        self.keep &= ~lacking

    def require_points(self, reason: str, lon: np.ndarray, lat: np.ndarray) -> None:
        index = RegionAssigner(self.cell_ids, self.res).assign(lon, lat)
        has = np.zeros(len(self.cell_ids), dtype=bool)
        has[index[index >= 0]] = True
        self._remove(~has, reason)

    def require_values(self, reason: str, values: pd.Series) -> None:
        ok = values.reindex(self.cell_ids).notna().to_numpy()
        self._remove(self.keep & ~ok, reason)

    def finish(self, rs_index: pd.DataFrame, sv_index: pd.DataFrame, root: Path):
        """The regions table and the image indexes of the kept regions (the other regions' image files deleted)."""
        self.report.kept = int(self.keep.sum())
        if not self.keep.any():
            reasons = ", ".join(f"{n:,} {r}" for r, n in self.report.dropped.most_common())
            raise BuildError(f"no region is left to build ({len(self.cell_ids):,} cells; removed: {reasons})")
        kept_ids = self.ids
        rs_keep = rs_index[REGION_ID].isin(kept_ids).to_numpy()
        sv_keep = np.isin(self.sv_region, np.flatnonzero(self.keep))
        for rel in list(rs_index["path"][~rs_keep]) + list(sv_index["path"][~sv_keep]):
            (root / rel).unlink(missing_ok=True)
        if (~rs_keep).any() or (~sv_keep).any():
            self.report.note(f"the removed regions' images are left out: {int((~rs_keep).sum()):,} remote-sensing "
                             f"tiles and {int((~sv_keep).sum()):,} street-view images")
        return (regions_frame(list(kept_ids)), rs_index[rs_keep].reset_index(drop=True),
                sv_index[sv_keep].reset_index(drop=True))


_NAMES = {"rs": "remote-sensing tile", "sv": "street-view image", "pois": "POI"}
REGION_REMOVED = "in a region removed by regions.keep or missing: drop"


def _pois_in(pois: pd.DataFrame, assigner: RegionAssigner, report: BuildReport) -> pd.DataFrame:
    """The POIs inside the final regions (they were read against the regions with images, before later removals)."""
    inside = assigner.assign(pois["lon"].to_numpy(), pois["lat"].to_numpy()) >= 0
    if not inside.all():
        r = next(r for r in reversed(report.readers) if r.reader.startswith("pois"))
        r.drop(REGION_REMOVED, int((~inside).sum()))
        r.kept -= int((~inside).sum())
    return pois[inside].reset_index(drop=True)


def _read_pois(config: CityConfig, assigner: RegionAssigner, report: BuildReport,
               progress: bool) -> pd.DataFrame | None:
    if config.pois is None:
        return None
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
