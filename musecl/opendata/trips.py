"""Trips (origin-destination records) into `trips.parquet`, read in chunks and written as they come.

Two layouts, as the NYC TLC trip records come: pickup/dropoff coordinates (yellow taxi 2009-mid 2016), or pickup/dropoff
zone ids plus the zone polygons (`taxi_zones.shp`, every year since). For zones, each trip end gets a point inside its
zone: by default a seeded uniform random point (so trips spread over the zone's regions instead of piling onto one
centroid), or the zone's representative point.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely

from musecl.opendata.config import TripsConfig, ZonesConfig
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, iter_table_chunks, parse_times, valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, BAD_TIME, OUTSIDE, BuildError, ReaderReport
from musecl.data.schema import WGS84_CRS

UNKNOWN_ZONE = "unknown zone"
ENDS_BEFORE_START = "ends before it starts"


@dataclass
class TripCounts:
    """Per-region trip ends of the kept trips (inputs of the `trip_count` indicator)."""

    origins: np.ndarray
    destinations: np.ndarray


def _trip_schema(with_end: bool) -> pa.Schema:
    fields = [
        ("trip_id", pa.string()), ("origin_lon", pa.float64()), ("origin_lat", pa.float64()),
        ("dest_lon", pa.float64()), ("dest_lat", pa.float64()), ("start_time", pa.timestamp("us")),
    ]
    if with_end:
        fields.append(("end_time", pa.timestamp("us")))
    return pa.schema(fields)


def zone_keys(values: pd.Series) -> pd.Series:
    """Zone ids normalised to text so 7, 7.0 and '7' match (CSV readers turn integer ids with gaps into floats)."""
    numeric = pd.to_numeric(values, errors="coerce")
    if numeric.notna().sum() == values.notna().sum():
        integral = numeric.dropna()
        if (integral == np.round(integral)).all():
            return numeric.astype("Int64").astype("str")
    return values.astype("str").str.strip()


class ZonePoints:
    """Points standing for trip ends given as zone ids: a seeded pool of random points per zone, or one fixed point."""

    def __init__(self, config: ZonesConfig, seed: int) -> None:
        import geopandas as gpd

        path = config.file
        try:
            zones = gpd.read_file(path, layer=config.layer) if config.layer else gpd.read_file(path)
        except Exception as err:
            raise BuildError(f"{path}: cannot read the trip zones as a vector file ({err})") from err
        if config.id_column not in zones.columns:
            raise BuildError(f"{path}: trips.zones.id_column '{config.id_column}' not found "
                             f"(columns: {[c for c in zones.columns if c != 'geometry']})")
        if zones.crs is None:
            raise BuildError(f"{path}: the zone file has no CRS")
        zones = zones[zones.geometry.notna() & ~zones.geometry.is_empty].to_crs(WGS84_CRS)
        # Several features may share an id (a zone split across islands): dissolve them into one.
        zones = zones.assign(_key=zone_keys(zones[config.id_column])).dissolve(by="_key")
        self.keys = pd.Index(zones.index.astype(str))
        geoms = zones.geometry.to_numpy()
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7219]))
        self.rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7220]))
        if config.point == "representative":
            pts = shapely.point_on_surface(geoms)
            self.pool = np.stack([shapely.get_x(pts), shapely.get_y(pts)], axis=-1)[:, None, :]
        else:
            self.pool = np.stack([_random_points_in(g, config.pool_size, rng) for g in geoms])

    def points(self, zone_values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(lon, lat, known) for each trip end; `known` is False where the id names no zone (lon/lat are NaN)."""
        index = self.keys.get_indexer(zone_keys(zone_values))
        known = index >= 0
        pick = self.rng.integers(0, self.pool.shape[1], size=len(index))
        lon = np.full(len(index), np.nan)
        lat = np.full(len(index), np.nan)
        lon[known] = self.pool[index[known], pick[known], 0]
        lat[known] = self.pool[index[known], pick[known], 1]
        return lon, lat, known


def _random_points_in(geometry: shapely.Geometry, n: int, rng: np.random.Generator) -> np.ndarray:
    """n uniform random (lon, lat) points inside a polygon, by rejection from its bounding box."""
    minx, miny, maxx, maxy = geometry.bounds
    shapely.prepare(geometry)
    out = np.empty((0, 2))
    for _ in range(100):
        cand = rng.uniform((minx, miny), (maxx, maxy), size=(max(2 * n, 64), 2))
        out = np.concatenate([out, cand[shapely.contains_xy(geometry, cand[:, 0], cand[:, 1])]])
        if len(out) >= n:
            return out[:n]
    pt = shapely.point_on_surface(geometry)  # a sliver of a zone: fall back to one point inside it
    return np.repeat([[pt.x, pt.y]], n, axis=0)


def read_trips(
    config: TripsConfig, assigner: RegionAssigner, out_path: Path, seed: int, progress: bool = True
) -> tuple[ReaderReport, TripCounts]:
    """Stream the trip files into `out_path` (Parquet), keeping the trips with both ends in the city's regions."""
    import pyarrow.parquet as pq
    from tqdm import tqdm

    report = ReaderReport("trips", ", ".join(str(f) for f in config.files))
    zones = ZonePoints(config.zones, seed) if config.by_zone else None
    if zones is not None:
        report.note(f"trip ends given as zone ids: each end placed at a {config.zones.point} point of its zone")
    elif config.crs is not None:
        from musecl.opendata.crs import crs_note

        report.note(crs_note(config.crs, 0).replace("0 coordinates", "trip-end coordinates"))
    if config.by_zone:
        point_cols = [config.origin_zone, config.dest_zone]
    else:
        point_cols = [config.origin_lon, config.origin_lat, config.dest_lon, config.dest_lat]
    time_cols = [config.start_time] + ([config.end_time] if config.end_time else [])
    id_cols = [config.trip_id] if config.trip_id else []
    columns = point_cols + time_cols + id_cols
    schema = _trip_schema(config.end_time is not None)
    origins = np.zeros(assigner.n_regions, dtype=np.int64)
    destinations = np.zeros(assigner.n_regions, dtype=np.int64)
    bar = tqdm(desc="trips", unit=" rows", unit_scale=True, disable=not progress)
    with pq.ParquetWriter(out_path, schema) as writer:
        for file_no, path in enumerate(config.files):
            row0 = 0
            chunks = iter_table_chunks(path, columns, config.chunk_rows, config.separator, key="trips.columns",
                                       string_columns=id_cols)
            for chunk in chunks:
                n = len(chunk)
                report.read += n
                bar.update(n)
                table = _clean_chunk(chunk, config, zones, assigner, report, origins, destinations,
                                     id_prefix=f"{file_no}:" if len(config.files) > 1 else "", row0=row0)
                row0 += n
                if table is not None:
                    writer.write_table(table)
    bar.close()
    report.check_outside_share()
    report.require_kept("trips")
    if config.trip_id:
        ids = pq.read_table(out_path, columns=["trip_id"]).column(0).to_pandas()
        dup = ids[ids.duplicated()]
        if len(dup):
            raise BuildError(f"{config.files[0]}: column '{config.trip_id}' (trips.columns.trip_id) repeats ids, "
                             f"e.g. {dup.iloc[0]!r} ({len(dup):,} repeats); leave trip_id out to number the trips")
    return report, TripCounts(origins, destinations)


def _clean_chunk(
    chunk: pd.DataFrame, config: TripsConfig, zones: ZonePoints | None, assigner: RegionAssigner,
    report: ReaderReport, origins: np.ndarray, destinations: np.ndarray, id_prefix: str, row0: int,
) -> pa.Table | None:
    if zones is not None:
        o_lon, o_lat, o_known = zones.points(chunk[config.origin_zone])
        d_lon, d_lat, d_known = zones.points(chunk[config.dest_zone])
        known = o_known & d_known
        report.drop(UNKNOWN_ZONE, int((~known).sum()))
        valid = known
    else:
        o_lon, o_lat = coordinates_wgs84(chunk, config.origin_lon, config.origin_lat, config.crs)
        d_lon, d_lat = coordinates_wgs84(chunk, config.dest_lon, config.dest_lat, config.crs)
        valid = valid_coordinates(o_lon, o_lat) & valid_coordinates(d_lon, d_lat)
        report.drop(BAD_COORDINATES, int((~valid).sum()))
    start = parse_times(chunk[config.start_time], config.time_format)
    good_time = start.notna().to_numpy().copy()
    end = None
    if config.end_time:
        end = parse_times(chunk[config.end_time], config.time_format)
        good_time &= end.notna().to_numpy()
    report.drop(BAD_TIME, int((valid & ~good_time).sum()))
    valid &= good_time
    if end is not None:
        backwards = valid & (end < start).to_numpy(dtype=bool, na_value=False)
        report.drop(ENDS_BEFORE_START, int(backwards.sum()))
        valid &= ~backwards
    o_idx = assigner.assign_valid(o_lon, o_lat, valid)
    d_idx = assigner.assign_valid(d_lon, d_lat, valid)
    inside = (o_idx >= 0) & (d_idx >= 0)
    keep = valid & inside
    report.drop(OUTSIDE, int((valid & ~inside).sum()))
    report.test_swap(assigner, o_lon, o_lat, o_idx < 0)
    report.kept += int(keep.sum())
    origins += assigner.counts(o_idx[keep])
    destinations += assigner.counts(d_idx[keep])
    if not keep.any():
        return None
    # Arrow arrays straight from numpy: no Python string per trip (ids are cast to text inside Arrow).
    import pyarrow.compute as pc

    if config.trip_id:
        trip_id = pc.cast(pa.array(chunk[config.trip_id]).filter(pa.array(keep)), pa.string())
    else:
        trip_id = pc.cast(pa.array(np.flatnonzero(keep) + row0), pa.string())
        if id_prefix:
            trip_id = pc.binary_join_element_wise(pa.scalar(id_prefix), trip_id, "")
    columns = [trip_id, pa.array(o_lon[keep]), pa.array(o_lat[keep]), pa.array(d_lon[keep]), pa.array(d_lat[keep]),
               pa.array(start.to_numpy()[keep], type=pa.timestamp("us"))]
    if end is not None:
        columns.append(pa.array(end.to_numpy()[keep], type=pa.timestamp("us")))
    return pa.Table.from_arrays(columns, schema=_trip_schema(end is not None))
