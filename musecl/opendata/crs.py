"""The `crs` option of every point and geometry reader: input coordinates in any CRS, converted to WGS84 lon/lat.

Three kinds of value:

* `EPSG:4326` / `WGS84` (the default): taken as they are;
* `GCJ-02` (China's official web-map datum: AMap/Gaode, Tencent, Google Maps in mainland China) and `BD-09` (Baidu
  Maps, GCJ-02 with a further offset): not CRSs that PROJ knows (they are deliberate obfuscations of WGS84) and
  are converted with the `prcoords` package (public domain). Its inverses are iterative (`gcj_wgs_bored`,
  `bd_wgs_bored`: fixed-point iteration of the forward formula until the step is below 1e-5 degrees or 10 steps);
  `tests/test_opendata_readers.py` measures the round-trip error (WGS84 -> GCJ-02/BD-09 -> back) over a grid of
  Chinese cities, and docs/real_cities.md reports it;
* anything else pyproj reads (`EPSG:32650`, `EPSG:2263`, a WKT or PROJ string): transformed with pyproj, axis order
  x/y = lon/lat (`always_xy`), so a projected table's x/y columns go where the config names lon/lat.

Coordinates that do not convert (non-finite, outside a projection's domain) come back as NaN, so the readers count them
as bad coordinates.
"""
from __future__ import annotations

import numpy as np

from musecl.opendata.report import BuildError

WGS84_NAMES = ("EPSG:4326", "WGS84", "WGS 84", "WGS-84", "4326", "OGC:CRS84")
GCJ02_NAMES = ("GCJ-02", "GCJ02", "GCJ_02")
BD09_NAMES = ("BD-09", "BD09", "BD_09")


def crs_kind(value: str | None) -> str:
    """'wgs84', 'gcj02', 'bd09' or 'pyproj' for a `crs` config value (case-insensitive for the names above)."""
    if value is None:
        return "wgs84"
    text = str(value).strip().upper()
    if text in WGS84_NAMES:
        return "wgs84"
    if text in GCJ02_NAMES:
        return "gcj02"
    if text in BD09_NAMES:
        return "bd09"
    return "pyproj"


def check_crs(value: str) -> str:
    """The value, after checking that it names a CRS this module converts; raises ValueError with the reason."""
    if crs_kind(value) == "pyproj":
        from pyproj import CRS

        try:
            CRS.from_user_input(value)
        except Exception as err:
            raise ValueError(f"{value!r} is neither WGS84, GCJ-02, BD-09 nor a CRS pyproj knows ({err})") from err
    return value


def is_wgs84(value: str | None) -> bool:
    return crs_kind(value) == "wgs84"


def _chinese_to_wgs84(lon: np.ndarray, lat: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    import prcoords

    convert = prcoords.gcj_wgs_bored if kind == "gcj02" else prcoords.bd_wgs_bored
    out_lon = np.full(len(lon), np.nan)
    out_lat = np.full(len(lat), np.nan)
    finite = np.flatnonzero(np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90))
    # prcoords is scalar Python (about 10-40 microseconds a point); its iteration has no vector form in the package.
    for i in finite:
        wgs = convert((float(lat[i]), float(lon[i])), False)
        out_lat[i], out_lon[i] = wgs.lat, wgs.lon
    return out_lon, out_lat


def wgs84_to_chinese(lon: np.ndarray, lat: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """WGS84 to GCJ-02 or BD-09 (the forward formulas; for tests and for making example inputs)."""
    import prcoords

    convert = prcoords.wgs_gcj if crs_kind(kind) == "gcj02" else prcoords.wgs_bd
    pairs = [convert((float(b), float(a)), False) for a, b in zip(lon, lat)]
    return np.array([p.lon for p in pairs]), np.array([p.lat for p in pairs])


def to_wgs84(lon, lat, crs: str | None) -> tuple[np.ndarray, np.ndarray]:
    """x/y (or lon/lat) arrays in `crs` as WGS84 lon/lat float64 arrays; unconvertible points become NaN."""
    lon = np.asarray(lon, dtype=np.float64)
    lat = np.asarray(lat, dtype=np.float64)
    kind = crs_kind(crs)
    if kind == "wgs84":
        return lon, lat
    if kind in ("gcj02", "bd09"):
        return _chinese_to_wgs84(lon, lat, kind)
    from pyproj import Transformer

    try:
        transformer = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    except Exception as err:
        raise BuildError(f"crs {crs!r}: pyproj cannot transform it to WGS84 ({err})") from err
    with np.errstate(invalid="ignore"):
        x, y = transformer.transform(lon, lat, errcheck=False)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    x[bad], y[bad] = np.nan, np.nan
    return x, y


def geometries_to_wgs84(geometries, crs: str):
    """Shapely geometries (array-like) whose coordinates are in `crs`, as WGS84 geometries."""
    import shapely

    def convert(xy: np.ndarray) -> np.ndarray:
        x, y = to_wgs84(xy[:, 0], xy[:, 1], crs)
        return np.column_stack([x, y])

    return shapely.transform(geometries, convert)


def frame_to_wgs84(frame, crs: str | None, source: str):
    """A GeoDataFrame as WGS84: `crs` (when given) overrides the file's own CRS, e.g. GCJ-02 data labelled WGS84."""
    import geopandas as gpd

    from musecl.data.schema import WGS84_CRS

    if crs is None:
        if frame.crs is None:
            raise BuildError(f"{source}: the file has no CRS; save it with one, or set the reader's `crs` key")
        return frame.to_crs(WGS84_CRS)
    if crs_kind(crs) == "pyproj":
        return frame.set_crs(crs, allow_override=True).to_crs(WGS84_CRS)
    geometry = geometries_to_wgs84(frame.geometry.to_numpy(), crs)
    return gpd.GeoDataFrame(frame.drop(columns=frame.geometry.name), geometry=geometry, crs=WGS84_CRS)


def crs_note(crs: str | None, n: int) -> str | None:
    """The report note saying what a reader converted (None for WGS84 input)."""
    kind = crs_kind(crs)
    if kind == "wgs84":
        return None
    how = {"gcj02": "GCJ-02 to WGS84 (prcoords, iterative inverse)", "bd09": "BD-09 to WGS84 (prcoords, iterative "
           "inverse)"}.get(kind, f"{crs} to WGS84 (pyproj)")
    return f"{n:,} coordinates converted from {how}"
