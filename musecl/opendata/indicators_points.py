"""Indicators given at the points of another grid (`kind: points` with `aggregate: nearest | mean | area_weighted`).

Released indicators often come as one value per cell of the authors' own grid, written at the cell's centroid (a CSV
of `lon,lat,value`, often without a header). Summing them per region (`aggregate: sum`, right for events such as
crimes) leaves most regions at 0 when the source grid is finer or offset. The other aggregates read the value column:

* `nearest`: each region takes the value of the point nearest its centre (a KD-tree in the city's metric CRS); the
  report gives the median and largest distance;
* `mean`: the mean of the points inside the region; a region with none follows `missing`;
* `area_weighted`: the source cells are rebuilt as polygons and interpolated by overlap area, as `kind: polygons`
  does (`quantity: intensive` area-weighted mean, `extensive` shared by area). `source_cells: h3` rebuilds each point's
  H3 cell at `source_h3_resolution` (exact when the points are H3 centroids); `source_cells: voronoi` (the default,
  for any grid) takes the Voronoi cells of the points, clipped to their convex hull grown by half the median distance
  between neighbouring points, so the outer cells stay about as large as the inner ones instead of reaching to
  infinity. A region no rebuilt cell overlaps follows `missing`.

`missing` (for mean and area_weighted; default `error`): `nearest` fills from the nearest region with a value, `zero`
with 0, `drop` removes the region from the bundle (counted under `regions`), `error` stops and names a region.
"""
from __future__ import annotations

import numpy as np

from musecl.opendata.config import IndicatorConfig
from musecl.opendata.indicators import areal_interpolate, fill_missing
from musecl.opendata.points import RegionAssigner, coordinates_wgs84, iter_table_chunks, valid_coordinates
from musecl.opendata.report import BAD_COORDINATES, OUTSIDE, ReaderReport
from musecl.data.schema import REGION_ID, WGS84_CRS


def read_point_values(config: IndicatorConfig, report: ReaderReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lon, lat, value) of the usable rows: valid coordinates (after `crs`) and a finite value; the rest counted."""
    import pandas as pd

    lons, lats, vals = [], [], []
    for chunk in iter_table_chunks(config.file, [config.lon, config.lat, config.value], config.chunk_rows,
                                   config.separator, key=f"indicators.{config.name}",
                                   names=() if config.header else config.columns):
        report.read += len(chunk)
        lon, lat = coordinates_wgs84(chunk, config.lon, config.lat, config.crs)
        value = pd.to_numeric(chunk[config.value], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        valid = valid_coordinates(lon, lat)
        report.drop(BAD_COORDINATES, int((~valid).sum()))
        bad_value = valid & ~np.isfinite(value)
        report.drop(f"bad {config.value}", int(bad_value.sum()))
        keep = valid & ~bad_value
        lons.append(lon[keep])
        lats.append(lat[keep])
        vals.append(value[keep])
    if config.crs is not None:
        from musecl.opendata.crs import crs_note

        report.note(crs_note(config.crs, report.read))
    return np.concatenate(lons), np.concatenate(lats), np.concatenate(vals)


def _local_xy(lon: np.ndarray, lat: np.ndarray, local_crs) -> np.ndarray:
    from pyproj import Transformer

    x, y = Transformer.from_crs(WGS84_CRS, local_crs, always_xy=True).transform(lon, lat)
    return np.column_stack([x, y])


def voronoi_cells(xy: np.ndarray):
    """The Voronoi cell of every point (in input order), clipped to the points' convex hull grown by half the median
    nearest-neighbour distance."""
    import shapely
    from scipy.spatial import cKDTree

    points = shapely.multipoints(xy)
    dist, _ = cKDTree(xy).query(xy, k=2)
    spacing = float(np.median(dist[:, 1]))
    hull = shapely.buffer(shapely.convex_hull(points), spacing / 2)
    cells = shapely.get_parts(shapely.voronoi_polygons(points, extend_to=hull))
    # voronoi_polygons does not keep the input order: match each cell to the point inside it.
    tree = shapely.STRtree(cells)
    point_idx, cell_idx = tree.query(shapely.points(xy), predicate="intersects")
    order = np.full(len(xy), -1)
    order[point_idx] = cell_idx
    return shapely.intersection(cells[order], hull), spacing


def _h3_cells(lon: np.ndarray, lat: np.ndarray, resolution: int):
    import h3
    import shapely

    from musecl.data.regions import latlng_to_cells

    cells = latlng_to_cells(lat, lon, resolution)
    polygons = {}
    for c in np.unique(cells):
        boundary = h3.cell_to_boundary(h3.int_to_str(int(c)))
        polygons[c] = shapely.Polygon([(p[1], p[0]) for p in boundary])
    return np.array([polygons[c] for c in cells], dtype=object), cells


def aggregate_point_values(config: IndicatorConfig, regions, assigner: RegionAssigner, local_crs,
                           centres_local: np.ndarray) -> tuple[np.ndarray, ReaderReport]:
    """Values at another grid's points onto the regions, as `config.aggregate` says; the report says what each got."""
    import geopandas as gpd

    report = ReaderReport(f"indicator {config.name}", str(config.file))
    lon, lat, value = read_point_values(config, report)
    n = assigner.n_regions
    index = assigner.assign(lon, lat)
    outside = index < 0
    report.test_swap(assigner, lon, lat, outside)
    per_region = assigner.counts(index).astype(np.int64)
    got = per_region > 0
    if config.aggregate == "nearest":
        from scipy.spatial import cKDTree

        if not len(value):
            report.require_kept("points with a value")
        dist, nearest = cKDTree(_local_xy(lon, lat, local_crs)).query(centres_local)
        values = value[nearest]
        used = np.unique(nearest)
        report.kept = len(used)
        report.drop("not nearest to any region centre", len(value) - len(used))
        report.note(f"aggregate nearest: all {n:,} regions took the value of the point nearest their centre "
                    f"({len(used):,} distinct points of {len(value):,}; distance median {np.median(dist):.0f} m, "
                    f"max {dist.max():.0f} m); {int((~got).sum()):,} regions hold no point of their own")
        report.check_outside_share(len(value), int(outside.sum()))
        return values, report
    if config.aggregate == "mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            values = assigner.counts(index, value) / np.where(got, per_region, 1)
        values[~got] = np.nan
        report.kept = int((~outside).sum())
        report.drop(OUTSIDE, int(outside.sum()))
        counts = per_region[got]
        spread = f" ({counts.min()}-{counts.max()} points per region, median {np.median(counts):.0f})" if got.any() \
            else ""
        report.note(f"aggregate mean: {int(got.sum()):,} of {n:,} regions got the mean of the {report.kept:,} points "
                    f"inside them{spread}; {int((~got).sum()):,} regions received no point "
                    f"(missing: {config.missing})")
        report.check_outside_share()
    else:
        if config.source_cells == "h3":
            geoms, source = _h3_cells(lon, lat, config.source_h3_resolution)
            polys = gpd.GeoDataFrame({"_value": value}, geometry=geoms, crs=WGS84_CRS)
            how = f"H3 cells at resolution {config.source_h3_resolution}"
            shared = len(source) - len(np.unique(source))
            if shared:
                report.warn(f"{shared:,} points share an H3 cell at resolution {config.source_h3_resolution} with "
                            "another point: is source_h3_resolution the source grid's?")
        else:
            cells, spacing = voronoi_cells(_local_xy(lon, lat, local_crs))
            polys = gpd.GeoDataFrame({"_value": value}, geometry=cells, crs=local_crs)
            how = f"Voronoi cells of the points (spacing {spacing:.0f} m)"
        values, used = areal_interpolate(regions, polys, local_crs, config.quantity)
        report.kept = used
        report.drop("its cell overlaps no region", len(value) - used)
        covered = np.isfinite(values)
        report.note(f"aggregate area_weighted ({config.quantity}): source cells rebuilt as {how}; "
                    f"{int(covered.sum()):,} of {n:,} regions got a value from {used:,} overlapping cells "
                    f"({int(got.sum()):,} regions hold a point); {int((~covered).sum()):,} regions overlap no cell "
                    f"(missing: {config.missing})")
    values = fill_missing(values, config, centres_local, regions[REGION_ID].to_numpy(dtype=object), report)
    return values, report
