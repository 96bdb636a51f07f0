"""Socioeconomic indicators per region, from four kinds of input.

* points (e.g. NYPD complaint or shooting incidents): events counted per region (or a weight column summed);
* raster (e.g. a WorldPop population GeoTIFF): mean of the pixels whose centres fall in the region, as MuseCL's
  `get_pdensity.py` did; a region no pixel centre falls in (raster coarser than the cells) takes the pixel under its
  centre;
* polygons (e.g. census tracts with a value): areal interpolation with a geopandas overlay in the city's metric CRS —
  intensive quantities (densities, rates, medians) as the area-weighted mean of the overlapping polygons, extensive ones
  (counts) shared out in proportion to the overlapping area;
* bundle: counted from the bundle itself — poi_count, comment_count, trip_count (trip ends), mobility_count (taxi
  region entries plus exits, MuseCL's m_in + m_out).

Regions a raster or polygon layer does not cover are filled as `missing` says: from the nearest covered region
(default), with zero, or with an error.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from musecl.opendata.config import IndicatorConfig
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, iter_table_chunks, valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, OUTSIDE, BuildError, ReaderReport
from musecl.data.schema import REGION_ID, WGS84_CRS

NODATA = "nodata pixel"
# A `sum` indicator leaving more regions than this share at 0 gets a warning: probably values on another grid.
SUSPICIOUS_EMPTY_SHARE = 0.5
GRID_SAMPLE = 50_000  # points looked at to tell a grid's centroids from events
GRID_SPACING_CV = 0.25
_STRIP_PIXELS = 4_000_000  # raster pixels read at a time


@dataclass
class BundleCounts:
    """What the readers counted per region, for the `bundle` indicators."""

    pois: pd.DataFrame | None = None  # the bundle's POI table
    trip_origins: np.ndarray | None = None
    trip_destinations: np.ndarray | None = None
    taxi_entries: np.ndarray | None = None
    taxi_exits: np.ndarray | None = None


def count_points(config: IndicatorConfig, assigner: RegionAssigner) -> tuple[np.ndarray, ReaderReport]:
    """Events per region (or the sum of `weight`), read in chunks (`aggregate: sum`). When most regions get nothing
    and the points are spaced like a grid's centroids, a warning suggests the aggregates for values on another grid."""
    report = ReaderReport(f"indicator {config.name}", str(config.file))
    totals = np.zeros(assigner.n_regions, dtype=np.float64)
    hits = np.zeros(assigner.n_regions, dtype=np.int64)
    sample: tuple[list, list] = ([], [])  # the first valid points, to tell a grid of values from scattered events
    columns = [config.lon, config.lat] + ([config.weight] if config.weight else [])
    for chunk in iter_table_chunks(config.file, columns, config.chunk_rows, config.separator,
                                   key=f"indicators.{config.name}", names=() if config.header else config.columns):
        report.read += len(chunk)
        lon, lat = coordinates_wgs84(chunk, config.lon, config.lat, config.crs)
        valid = valid_coordinates(lon, lat)
        report.drop(BAD_COORDINATES, int((~valid).sum()))
        weights = None
        if config.weight:
            weights = pd.to_numeric(chunk[config.weight], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
            bad_weight = valid & ~np.isfinite(weights)
            report.drop(f"bad {config.weight}", int(bad_weight.sum()))
            valid &= ~bad_weight
        index = assigner.assign_valid(lon, lat, valid)
        report.drop(OUTSIDE, int((index == -1).sum()))
        report.test_swap(assigner, lon, lat, index < 0)
        report.kept += int((index >= 0).sum())
        totals += assigner.counts(index, weights)
        hits += assigner.counts(index).astype(np.int64)
        if len(sample[0]) < GRID_SAMPLE:
            sample[0].extend(lon[valid][:GRID_SAMPLE].tolist())
            sample[1].extend(lat[valid][:GRID_SAMPLE].tolist())
    from musecl.opendata.crs import crs_note

    if crs_note(config.crs, report.read):
        report.note(crs_note(config.crs, report.read))
    empty = int((hits == 0).sum())
    what = f"the sum of {config.weight}" if config.weight else "a count"
    report.note(f"aggregate sum: {assigner.n_regions - empty:,} of {assigner.n_regions:,} regions got {what} of the "
                f"{report.kept:,} points inside them; {empty:,} regions hold no point (value 0)")
    if empty > SUSPICIOUS_EMPTY_SHARE * assigner.n_regions and looks_like_a_grid(*map(np.array, sample)):
        report.warn(f"{empty:,} of {assigner.n_regions:,} regions get 0 from {config.file.name}: if it holds values "
                    "at another grid's points (e.g. hexagon centroids) rather than events, set aggregate: nearest, "
                    f"mean or area_weighted (indicators.{config.name}.aggregate)")
    report.check_outside_share()
    return totals, report


def looks_like_a_grid(lon: np.ndarray, lat: np.ndarray) -> bool:
    """True when points are regularly spaced like the cells of a grid: distinct positions whose nearest-neighbour
    distances vary little (coefficient of variation below GRID_SPACING_CV); events (crimes, trips) are irregular."""
    from scipy.spatial import cKDTree

    if len(lon) < 10:
        return False
    xy = np.column_stack([lon * np.cos(np.radians(np.median(lat))), lat])
    dist, _ = cKDTree(xy).query(xy, k=2)
    nearest = dist[:, 1]
    return bool(nearest.min() > 0 and nearest.std() / nearest.mean() < GRID_SPACING_CV)


def fill_missing(values: np.ndarray, config: IndicatorConfig, centres_local: np.ndarray, region_ids: np.ndarray,
                 report: ReaderReport) -> np.ndarray:
    """Fill the NaN entries as `config.missing` says (nearest covered region, zero, error; drop leaves them NaN and
    the build removes those regions)."""
    missing = ~np.isfinite(values)
    if not missing.any():
        return values
    if missing.all():
        raise BuildError(f"{config.file}: indicator '{config.name}' covers none of the city's regions "
                         "(is it for another area, or its CRS wrong?)")
    if config.missing == "error":
        raise BuildError(f"{config.file}: indicator '{config.name}' does not cover {int(missing.sum())} regions, "
                         f"e.g. {region_ids[np.flatnonzero(missing)[0]]} (set indicators.{config.name}.missing to "
                         "'nearest', 'zero' or 'drop' to fill them or drop the regions)")
    if config.missing == "drop":
        report.note(f"{int(missing.sum())} of {len(values)} regions received no value; they are dropped from the "
                    f"bundle (indicators.{config.name}.missing: drop; counted under 'regions')")
        return values
    out = values.copy()
    if config.missing == "zero":
        out[missing] = 0.0
    else:
        from scipy.spatial import cKDTree

        tree = cKDTree(centres_local[~missing])
        _, nearest = tree.query(centres_local[missing])
        out[missing] = values[~missing][nearest]
    report.note(f"{int(missing.sum())} of {len(values)} regions not covered; filled with "
                f"{'the nearest covered region' if config.missing == 'nearest' else 'zero'}")
    return out


def raster_mean(config: IndicatorConfig, regions, assigner: RegionAssigner, centres_local: np.ndarray,
                progress: bool = True) -> tuple[np.ndarray, ReaderReport]:
    """Mean of the raster pixels whose centres fall in each region (a region without one: the pixel at its centre)."""
    import rasterio
    from pyproj import Transformer
    from rasterio.windows import Window, from_bounds
    from rasterio.warp import transform_bounds
    from tqdm import tqdm

    report = ReaderReport(f"indicator {config.name}", str(config.file))
    try:
        src = rasterio.open(config.file)
    except Exception as err:
        raise BuildError(f"{config.file}: cannot open as a raster ({err})") from err
    with src:
        if src.crs is None:
            raise BuildError(f"{config.file}: the raster has no CRS")
        if config.band > src.count:
            raise BuildError(f"{config.file}: indicators.{config.name}.band is {config.band} but the raster has "
                             f"{src.count} band(s)")
        bounds = transform_bounds(WGS84_CRS, src.crs, *regions.total_bounds, densify_pts=21)
        full = Window(0, 0, src.width, src.height)
        try:
            # Every pixel touching the regions' extent (a margin of one), so no pixel centre inside a cell is missed.
            w = from_bounds(*bounds, transform=src.transform)
            col0, row0 = math.floor(w.col_off) - 1, math.floor(w.row_off) - 1
            window = Window(col0, row0, math.ceil(w.col_off + w.width) + 1 - col0,
                            math.ceil(w.row_off + w.height) + 1 - row0).intersection(full)
        except Exception:  # WindowError: the raster does not overlap the city
            window = None
        sums = np.zeros(assigner.n_regions)
        counts = np.zeros(assigner.n_regions)
        to_wgs84 = None if src.crs.to_epsg() == 4326 else Transformer.from_crs(src.crs, WGS84_CRS, always_xy=True)
        if window is not None:
            strip = max(1, _STRIP_PIXELS // max(1, int(window.width)))
            t = src.transform
            for row0 in tqdm(range(int(window.row_off), int(window.row_off + window.height), strip),
                             desc=f"raster {config.name}", unit=" strips", disable=not progress):
                rows = min(strip, int(window.row_off + window.height) - row0)
                part = Window(window.col_off, row0, window.width, rows)
                data = src.read(config.band, window=part, masked=True)
                values = np.ma.filled(data.astype(np.float64), np.nan)
                cols, rws = np.meshgrid(np.arange(part.width) + part.col_off + 0.5, np.arange(rows) + row0 + 0.5)
                x = t.c + cols * t.a + rws * t.b
                y = t.f + cols * t.d + rws * t.e
                if to_wgs84 is not None:
                    x, y = to_wgs84.transform(x, y)
                x, y, values = x.ravel(), y.ravel(), values.ravel()
                report.read += values.size
                ok = np.isfinite(values)
                report.drop(NODATA, int((~ok).sum()))
                index = assigner.assign_valid(x, y, ok & valid_coordinates(x, y))
                report.drop(OUTSIDE, int((ok & (index < 0)).sum()))
                report.kept += int((index >= 0).sum())
                sums += assigner.counts(index, np.where(ok, values, 0.0))
                counts += assigner.counts(index)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        empty = np.flatnonzero(counts == 0)
        if len(empty):
            lon = regions["lon"].to_numpy()[empty]
            lat = regions["lat"].to_numpy()[empty]
            if to_wgs84 is not None:
                xs, ys = Transformer.from_crs(WGS84_CRS, src.crs, always_xy=True).transform(lon, lat)
            else:
                xs, ys = lon, lat
            sampled = np.array([v[0] for v in src.sample(zip(xs, ys), indexes=config.band, masked=True)],
                               dtype=object)
            centre_values = np.array([np.nan if np.ma.is_masked(v) else float(v) for v in sampled])
            mean[empty] = centre_values
            n_sampled = int(np.isfinite(centre_values).sum())
            if n_sampled:
                report.note(f"{n_sampled} regions hold no pixel centre (raster coarser than the cells): "
                            "took the pixel under the region centre")
    values = fill_missing(mean, config, centres_local, assigner.region_ids, report)
    return values, report


def polygons_interpolated(config: IndicatorConfig, regions, local_crs, centres_local: np.ndarray
                          ) -> tuple[np.ndarray, ReaderReport]:
    """Areal interpolation of a polygon layer's value column onto the regions, in the metric CRS."""
    import geopandas as gpd
    import shapely

    report = ReaderReport(f"indicator {config.name}", str(config.file))
    try:
        polys = gpd.read_file(config.file, layer=config.layer) if config.layer else gpd.read_file(config.file)
    except Exception as err:
        raise BuildError(f"{config.file}: cannot read as a vector file ({err})") from err
    report.read = len(polys)
    if config.column not in polys.columns:
        raise BuildError(f"{config.file}: indicators.{config.name}.column '{config.column}' not found "
                         f"(columns: {[c for c in polys.columns if c != 'geometry']})")
    if polys.crs is None and config.crs is None:
        raise BuildError(f"{config.file}: the polygon file has no CRS (set indicators.{config.name}.crs)")
    value = pd.to_numeric(polys[config.column], errors="coerce")
    good = value.notna() & np.isfinite(value) & polys.geometry.notna() & ~polys.geometry.is_empty
    report.drop(f"no numeric {config.column}", int((~good).sum()))
    polys = polys[good]
    if config.crs is not None:
        from musecl.opendata.crs import frame_to_wgs84

        polys = frame_to_wgs84(polys, config.crs, str(config.file))
        report.note(f"polygons read as {config.crs} (indicators.{config.name}.crs)")
    polys = gpd.GeoDataFrame({"_value": value[good].to_numpy()}, geometry=shapely.make_valid(
        polys.geometry.to_numpy()), crs=polys.crs)
    values, used = areal_interpolate(regions, polys, local_crs, config.quantity)
    report.kept = int(used)
    report.drop("no overlap with the regions", int(len(polys) - used))
    values = fill_missing(values, config, centres_local, regions[REGION_ID].to_numpy(dtype=object), report)
    return values, report


def areal_interpolate(regions, polys, local_crs, quantity: str) -> tuple[np.ndarray, int]:
    """Per-region values (NaN where no polygon overlaps) of polygons with a `_value` column, and how many polygons
    overlap a region: the area-weighted mean (intensive) or the values shared out by overlapping area (extensive),
    with a geopandas overlay in the metric CRS."""
    import geopandas as gpd

    polys = polys.to_crs(local_crs)
    polys = polys[polys.geometry.geom_type.isin(["Polygon", "MultiPolygon", "GeometryCollection"])].copy()
    polys["_poly"] = np.arange(len(polys))
    polys["_poly_area"] = polys.geometry.area
    local = regions[[REGION_ID, "geometry"]].to_crs(local_crs)
    local["_region"] = np.arange(len(local))
    pieces = gpd.overlay(local, polys, how="intersection", keep_geom_type=True)
    pieces = pieces[pieces.geometry.area > 0]
    area = pieces.geometry.area.to_numpy()
    region = pieces["_region"].to_numpy()
    n = len(local)
    if quantity == "intensive":
        num = np.bincount(region, weights=pieces["_value"].to_numpy() * area, minlength=n)
        den = np.bincount(region, weights=area, minlength=n)
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(den > 0, num / np.where(den > 0, den, 1), np.nan)
    else:
        share = area / np.maximum(pieces["_poly_area"].to_numpy(), 1e-12)
        values = np.bincount(region, weights=pieces["_value"].to_numpy() * share, minlength=n)
        values[np.bincount(region, minlength=n) == 0] = np.nan
    return values, int(pieces["_poly"].nunique())


def bundle_indicator(config: IndicatorConfig, counts: BundleCounts, assigner: RegionAssigner) -> np.ndarray:
    """An indicator counted from the bundle's own POIs, trips or trajectories."""
    key = f"indicators.{config.name}"
    if config.of in ("poi_count", "comment_count"):
        pois = counts.pois
        if pois is None:
            raise BuildError(f"city config {key}: {config.of} needs a 'pois' section")
        index = assigner.assign(pois["lon"].to_numpy(), pois["lat"].to_numpy())
        if config.of == "poi_count":
            return assigner.counts(index).astype(np.float64)
        if "n_comments" not in pois.columns:
            raise BuildError(f"city config {key}: comment_count needs POIs with comments (a POI table with "
                             "n_comments, or group_rows_by with a text column)")
        return assigner.counts(index, pois["n_comments"].to_numpy(dtype=np.float64))
    if config.of == "trip_count":
        if counts.trip_origins is None:
            raise BuildError(f"city config {key}: trip_count needs a 'trips' section")
        return (counts.trip_origins + counts.trip_destinations).astype(np.float64)
    if counts.taxi_entries is None:
        raise BuildError(f"city config {key}: mobility_count needs a 'trajectories' section")
    return (counts.taxi_entries + counts.taxi_exits).astype(np.float64)


def external_indicators(
    configs: tuple[IndicatorConfig, ...], regions, assigner: RegionAssigner, local_crs, progress: bool = True,
) -> tuple[dict[str, pd.Series], list[ReaderReport]]:
    """The indicators read from files (points, raster, polygons) per region, NaN where `missing: drop` leaves a
    region without a value, and their reports. Bundle indicators come later, from the final regions' counts."""
    from musecl.opendata.indicators_points import aggregate_point_values

    centres = regions.to_crs(local_crs).geometry.centroid
    centres_local = np.column_stack([centres.x.to_numpy(), centres.y.to_numpy()])
    out: dict[str, pd.Series] = {}
    reports: list[ReaderReport] = []
    for config in configs:
        if config.kind == "points" and config.aggregate == "sum":
            values, report = count_points(config, assigner)
        elif config.kind == "points":
            values, report = aggregate_point_values(config, regions, assigner, local_crs, centres_local)
        elif config.kind == "raster":
            values, report = raster_mean(config, regions, assigner, centres_local, progress)
        elif config.kind == "polygons":
            values, report = polygons_interpolated(config, regions, local_crs, centres_local)
        else:
            continue
        out[config.name] = assigner.series(np.asarray(values, dtype=np.float64), config.name)
        reports.append(report)
    return out, reports


def compute_indicators(
    configs: tuple[IndicatorConfig, ...], regions, assigner: RegionAssigner, local_crs, counts: BundleCounts,
    progress: bool = True, precomputed: dict[str, pd.Series] | None = None,
) -> tuple[pd.DataFrame, list[ReaderReport], dict[str, dict[str, Any]]]:
    """The indicators table (region_id + one float column per indicator), reader reports, and city.json's spec.

    `precomputed` holds the file indicators of `external_indicators` (computed before the regions were final);
    the others are computed here."""
    if precomputed is None:
        precomputed, reports = external_indicators(configs, regions, assigner, local_crs, progress)
    else:
        reports = []
    table = pd.DataFrame({REGION_ID: assigner.region_ids})
    spec: dict[str, dict[str, Any]] = {}
    for config in configs:
        if config.kind == "bundle":
            values = bundle_indicator(config, counts, assigner)
        else:
            values = precomputed[config.name].reindex(assigner.region_ids).to_numpy(dtype=np.float64)
        if config.transform == "log1p" and np.nanmin(values) < 0:
            raise BuildError(f"indicator '{config.name}' has negative values (min {np.nanmin(values):.4g}) but "
                             "transform log1p needs >= 0; set its transform to identity")
        table[config.name] = np.asarray(values, dtype=np.float64)
        spec[config.name] = {
            "transform": config.transform,
            "unit": config.unit,
            "kind": config.kind,
            "source": config.of if config.kind == "bundle" else config.file.name,
            "description": config.description,
        }
        if config.kind == "points":
            spec[config.name]["aggregate"] = config.aggregate
    return table, reports, spec
