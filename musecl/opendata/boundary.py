"""The city boundary (a polygon file or a lon/lat box), the H3 regions inside it, and the local metric CRS."""
from __future__ import annotations

import geopandas as gpd
import shapely

from musecl.opendata.config import BoundaryConfig
from musecl.opendata.report import BuildError, ReaderReport
from musecl.data.schema import WGS84_CRS


def read_boundary(config: BoundaryConfig) -> tuple[shapely.Geometry, ReaderReport]:
    """The city outline as one WGS84 (Multi)Polygon: all features of the file merged, or the configured box."""
    from musecl.opendata.crs import crs_note, frame_to_wgs84, geometries_to_wgs84

    if config.bbox is not None:
        report = ReaderReport("boundary", f"bbox {list(config.bbox)}", read=1, kept=1)
        box = shapely.box(*config.bbox)
        if config.crs is not None:
            box = geometries_to_wgs84(shapely.segmentize(box, (config.bbox[2] - config.bbox[0]) / 64), config.crs)
            report.note(f"bbox given in {config.crs}; converted to WGS84")
        return box, report
    path = config.file
    try:
        frame = gpd.read_file(path, layer=config.layer) if config.layer else gpd.read_file(path)
    except Exception as err:  # pyogrio raises DataSourceError, DataLayerError, ...
        raise BuildError(f"{path}: cannot read as a vector file (GeoJSON, GeoPackage, Shapefile): {err}") from err
    report = ReaderReport("boundary", str(path), read=len(frame))
    if config.where is not None:
        column, values = config.where
        if column not in frame.columns:
            raise BuildError(f"{path}: boundary.where column '{column}' not found (columns: {list(frame.columns)})")
        keep = frame[column].astype(str).isin(values)
        if not keep.any():
            sample = sorted(frame[column].astype(str).unique())[:10]
            raise BuildError(f"{path}: no feature has {column} in {list(values)} (values present include {sample})")
        report.drop(f"not in boundary.where {column}", int((~keep).sum()))
        frame = frame[keep]
    if frame.crs is None and config.crs is None:
        raise BuildError(f"{path}: the file has no CRS; save it with one (WGS84 / EPSG:4326 for lon/lat), or set "
                         "boundary.crs")
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    polygonal = frame.geometry.geom_type.isin(["Polygon", "MultiPolygon"])
    report.drop("not a polygon", int((~polygonal).sum()))
    frame = frame[polygonal]
    if frame.empty:
        raise BuildError(f"{path}: no polygon feature (the boundary must be a Polygon or MultiPolygon)")
    report.kept = len(frame)
    if config.crs is not None:
        report.note(f"{crs_note(config.crs, len(frame)).replace('coordinates', 'features')}"
                    + (f" (the file says {frame.crs.to_string()}; boundary.crs overrides it)" if frame.crs else ""))
    geometry = shapely.make_valid(frame_to_wgs84(frame, config.crs, str(path)).geometry.union_all())
    if geometry.geom_type == "GeometryCollection":  # make_valid may leave stray lines next to the polygons
        geometry = shapely.union_all([g for g in geometry.geoms if g.geom_type in ("Polygon", "MultiPolygon")])
    return geometry, report


def boundary_frame(boundary: shapely.Geometry, name: str) -> gpd.GeoDataFrame:
    """The boundary as the one-feature GeoDataFrame the bundle stores in boundary.geojson."""
    return gpd.GeoDataFrame({"name": [name]}, geometry=[boundary], crs=WGS84_CRS)


def local_metric_crs(boundary: shapely.Geometry, configured: str = "auto"):
    """A projected CRS in metres for the city: the configured one, or the UTM zone of the boundary's centre."""
    from pyproj import CRS

    if configured != "auto":
        try:
            crs = CRS.from_user_input(configured)
        except Exception as err:
            raise BuildError(f"city config local_crs {configured!r} is not a CRS pyproj knows ({err})") from err
        if not crs.is_projected:
            raise BuildError(f"city config local_crs {configured!r} is not projected; give one in metres (or 'auto')")
        return crs
    crs = gpd.GeoSeries([boundary], crs=WGS84_CRS).estimate_utm_crs()
    if crs is None:
        raise BuildError("no UTM zone fits the boundary (polar city?); set local_crs in the city config")
    return crs
