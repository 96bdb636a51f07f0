"""Shared by the point readers: chunked table reading, coordinate cleaning, and vectorised assignment to regions.

Big inputs (tens of millions of taxi trips) are read `chunk_rows` rows at a time — pandas' C parser for CSV,
pyarrow's batch iterator for Parquet — so memory stays bounded by the chunk, not the file.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import h3
import numpy as np
import pandas as pd

from musecl.opendata.report import BuildError
from musecl.data.regions import latlng_to_cells
from musecl.data.schema import REGION_ID

PARQUET_SUFFIXES = (".parquet", ".pq", ".geoparquet")


def is_parquet(path: Path) -> bool:
    return path.suffix.lower() in PARQUET_SUFFIXES


def table_columns(path: Path, separator: str = ",", names: Sequence[str] = ()) -> list[str]:
    """Column names of a CSV or Parquet file, without reading its rows (`names`: a CSV without a header row)."""
    if names:
        return list(names)
    if is_parquet(path):
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as err:
            raise BuildError(f"{path}: cannot read as Parquet ({err})") from err
    try:
        return list(pd.read_csv(path, sep=separator, nrows=0).columns)
    except Exception as err:
        raise BuildError(f"{path}: cannot read as CSV with separator {separator!r} ({err})") from err


def require_columns(path: Path, wanted: Sequence[str], available: Sequence[str], key: str) -> None:
    missing = [c for c in wanted if c not in available]
    if missing:
        raise BuildError(f"{path}: column(s) {missing} named in the city config ({key}) not found; "
                         f"the file has {list(available)}")


def iter_table_chunks(
    path: Path, columns: Sequence[str], chunk_rows: int, separator: str = ",", key: str = "columns",
    string_columns: Sequence[str] = (), names: Sequence[str] = (),
) -> Iterator[pd.DataFrame]:
    """The given columns of a CSV or Parquet file, `chunk_rows` rows at a time. `string_columns` are read as text;
    `names` are the column names of a CSV without a header row (its first line is data)."""
    columns = list(dict.fromkeys(columns))
    require_columns(path, columns, table_columns(path, separator, names), key)
    if names and is_parquet(path):
        raise BuildError(f"{path}: a Parquet file always names its columns; header: false is for CSV ({key})")
    if is_parquet(path):
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=chunk_rows, columns=columns):
            frame = batch.to_pandas()
            for col in string_columns:
                frame[col] = frame[col].astype("str")
            yield frame
        return
    dtype = {c: "str" for c in string_columns}
    try:
        header = dict(header=None, names=list(names)) if names else {}
        reader = pd.read_csv(path, sep=separator, usecols=columns, chunksize=chunk_rows, dtype=dtype,
                             low_memory=True, **header)
        yield from reader
    except pd.errors.ParserError as err:
        raise BuildError(f"{path}: malformed CSV ({err})") from err


def coordinates(frame: pd.DataFrame, lon: str, lat: str) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude columns as float64 arrays; text that is not a number becomes NaN."""
    return (
        pd.to_numeric(frame[lon], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
        pd.to_numeric(frame[lat], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan),
    )


def coordinates_wgs84(frame: pd.DataFrame, lon: str, lat: str, crs: str | None) -> tuple[np.ndarray, np.ndarray]:
    """Like `coordinates`, converted from the reader's `crs` (GCJ-02, BD-09, any pyproj CRS) to WGS84 lon/lat."""
    from musecl.opendata.crs import to_wgs84

    x, y = coordinates(frame, lon, lat)
    return to_wgs84(x, y, crs)


def valid_coordinates(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """True where a point is a usable WGS84 position: finite, in range, and not the (0, 0) placeholder.

    (0, 0) is how many exports (the NYC taxi records among them) write a missing GPS fix.
    """
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(lon) & np.isfinite(lat) & (np.abs(lon) <= 180) & (np.abs(lat) <= 90)
    return ok & ~((lon == 0) & (lat == 0))


def parse_times(values: pd.Series, time_format: str | None) -> pd.Series:
    """Timestamps as naive datetime64[us]; unparseable values become NaT. Time-zone-aware values go to UTC."""
    if pd.api.types.is_datetime64_any_dtype(values):
        times = values
    else:
        times = pd.to_datetime(values, format=time_format, errors="coerce")
    if getattr(times.dt, "tz", None) is not None:
        times = times.dt.tz_convert("UTC").dt.tz_localize(None)
    return times.astype("datetime64[us]")


class RegionAssigner:
    """Maps points to the index of their region (or -1) with one H3 call per point and a binary search per point."""

    def __init__(self, region_ids: Sequence[str], resolution: int) -> None:
        self.region_ids = np.asarray(region_ids, dtype=object)
        self.resolution = int(resolution)
        cells = np.array([h3.str_to_int(str(r)) for r in self.region_ids], dtype=np.uint64)
        self._order = np.argsort(cells, kind="stable")
        self._sorted = cells[self._order]

    @property
    def n_regions(self) -> int:
        return len(self.region_ids)

    def assign(self, lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
        """Region index (int64, into `region_ids`) of every point; -1 for points outside every region.

        Points must be valid (see `valid_coordinates`); invalid ones raise ValueError naming the first bad row.
        """
        if len(lon) == 0:
            return np.empty(0, dtype=np.int64)
        cells = latlng_to_cells(lat, lon, self.resolution)
        pos = np.searchsorted(self._sorted, cells)
        pos_clipped = np.minimum(pos, len(self._sorted) - 1)
        found = self._sorted[pos_clipped] == cells
        return np.where(found, self._order[pos_clipped], -1).astype(np.int64)

    def assign_valid(self, lon: np.ndarray, lat: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """Like `assign`, but points where `valid` is False get -2 instead of raising."""
        out = np.full(len(lon), -2, dtype=np.int64)
        out[valid] = self.assign(lon[valid], lat[valid])
        return out

    def counts(self, index: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
        """Per-region totals of the points with a region index >= 0."""
        inside = index >= 0
        w = None if weights is None else weights[inside]
        return np.bincount(index[inside], weights=w, minlength=self.n_regions)

    def swap_test(self, lon: np.ndarray, lat: np.ndarray, outside: np.ndarray, limit: int = 20_000) -> tuple[int, int]:
        """(tested, inside when swapped): of up to `limit` finite points not in a region (`outside`: outside the
        city or out of range, e.g. a latitude of 116), how many would fall inside with lon and lat exchanged. The
        evidence behind a "lon/lat swapped" hint, which is given only when it holds."""
        idx = np.flatnonzero(outside & np.isfinite(lon) & np.isfinite(lat))[:limit]
        if not len(idx):
            return 0, 0
        s_lon, s_lat = lat[idx], lon[idx]
        ok = valid_coordinates(s_lon, s_lat)
        inside = int((self.assign(s_lon[ok], s_lat[ok]) >= 0).sum())
        return len(idx), inside

    def series(self, values: np.ndarray, name: str) -> pd.Series:
        return pd.Series(values, index=pd.Index(self.region_ids, name=REGION_ID), name=name)
