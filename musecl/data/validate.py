"""Checking a city bundle before any stage uses it: `validate_bundle`, `import_bundle` and a command line.

    python -m musecl.data.validate PATH [--drop] [--no-images]

Every problem is reported with the file, the column and/or the first offending row (row numbers count from 0, as in
pandas) with its value, the number of rows affected and what was expected; all problems are collected before anything
is raised. With ``bad_rows="drop"`` rows whose problem makes only that row useless (a point outside the city, bad
coordinates, an unreadable image, a malformed POI category, ...) are dropped and counted per file and reason; problems
with the bundle's structure (missing files or columns, duplicate ids, NaN indicators, regions without images, ...)
remain errors. `docs/data_format.md` documents the format and these rules for people.
"""
from __future__ import annotations

import argparse
import difflib
import json
import math
import os
import shutil
import sys
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from musecl.data import schema
from musecl.data.bundle import BundleError
from musecl.data.schema import REGION_ID

BAD_ROWS = ("error", "drop")
MIN_IMAGE_SIDE = 8  # pixels; anything smaller is a placeholder or a broken download (the generator's minimum is 8)
MAX_EXAMPLES = 5  # ids listed in a message about a set of regions
REQUIRED_META = ("name", "h3_resolution", "indicators")
# Column names people commonly use for the format's columns; difflib catches the rest ('lng' for 'lon', ...).
_ALIASES = {
    "lon": ("lng", "long", "longitude", "x"),
    "lat": ("latitude", "y"),
    REGION_ID: ("h3", "h3_index", "h3_id", "hex_id", "cell", "cell_id", "region", "grid_id"),
    "category": ("tag", "tags", "label", "type", "categories"),
    "image_id": ("id", "img_id", "image"),
    "path": ("file", "filename", "file_name", "image_path", "filepath"),
    "origin_lon": ("o_lon", "pickup_longitude", "start_lon", "origin_lng"),
    "origin_lat": ("o_lat", "pickup_latitude", "start_lat"),
    "dest_lon": ("d_lon", "dropoff_longitude", "end_lon", "dest_lng", "destination_lon"),
    "dest_lat": ("d_lat", "dropoff_latitude", "end_lat", "destination_lat"),
    "start_time": ("pickup_datetime", "departure_time", "start", "t_start"),
    "vehicle_id": ("taxi_id", "car_id", "vehicle", "device_id"),
    "time": ("timestamp", "datetime", "t"),
}
# Point columns checked for coordinates and location: table -> (lon, lat) pairs.
_POINTS = {
    "pois": (("lon", "lat"),),
    "trips": (("origin_lon", "origin_lat"), ("dest_lon", "dest_lat")),
    "trajectories": (("lon", "lat"),),
    "street_view": (("lon", "lat"),),
}
_IMAGE_TABLES = {"remote_sensing": schema.REMOTE_SENSING_DIR, "street_view": schema.STREET_VIEW_DIR}
# Text columns that must hold a value in every row (name, text may be empty; category/path have their own checks).
_KEY_COLUMNS = {"regions": (REGION_ID,), "pois": ("poi_id",), "trips": ("trip_id",), "trajectories": ("vehicle_id",),
                "remote_sensing": ("image_id",), "street_view": ("image_id",), "indicators": (REGION_ID,),
                "latents": (REGION_ID,)}


class BundleValidationError(BundleError):
    """Raised by `validate_bundle` when a bundle has errors; `report` holds everything that was found."""

    def __init__(self, report: "ValidationReport") -> None:
        self.report = report
        lines = "\n".join(f"  - {e}" for e in report.errors)
        super().__init__(f"city bundle {report.root} failed validation with {len(report.errors)} error(s):\n{lines}")


@dataclass
class ValidationReport:
    """What `validate_bundle` found: errors, warnings, rows dropped per (file, reason) and the cleaned tables."""

    root: Path
    bad_rows: str = "error"
    city: str | None = None
    h3_resolution: int | None = None
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)
    rows: dict[str, int] = field(default_factory=dict)  # rows read per file
    # Tables (schema.TABLES keys) changed by dropping rows or converting column types, as they should be written.
    tables: dict[str, pd.DataFrame] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not self.errors

    def dropped_from(self, file: str) -> int:
        return sum(n for (f, _), n in self.dropped.items() if f == file)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise BundleValidationError(self)

    def _headline(self) -> str:
        what = f"'{self.city}'" if self.city else "city bundle"
        res = f", H3 resolution {self.h3_resolution}" if self.h3_resolution is not None else ""
        n_dropped = sum(self.dropped.values())
        verdict = "VALID" if self.ok else "INVALID"
        return (f"{verdict}: {what} at {self.root}{res}: {len(self.errors)} error(s), {len(self.warnings)} warning(s), "
                f"{n_dropped} row(s) dropped (bad_rows={self.bad_rows!r}; rows count from 0)")

    def summary(self) -> str:
        """A plain-text report (what the command line prints)."""
        lines = [self._headline()]
        if self.rows:
            lines.append("rows: " + ", ".join(
                f"{file} {n}" + (f" (-{self.dropped_from(file)})" if self.dropped_from(file) else "")
                for file, n in self.rows.items()))
        if self.dropped:
            lines.append("dropped:")
            lines += [f"  {file}: {n} row(s), {reason}" for (file, reason), n in self.dropped.items()]
        if self.errors:
            lines.append("errors:")
            lines += [f"  - {e}" for e in self.errors]
        if self.warnings:
            lines.append("warnings:")
            lines += [f"  - {w}" for w in self.warnings]
        return "\n".join(lines)

    def to_markdown(self) -> str:
        """The report as Markdown (for a notebook's `display(Markdown(...))`)."""
        parts = [f"**{self._headline()}**"]
        if self.rows:
            parts.append(_markdown_table(
                ["file", "rows read", "rows dropped", "rows kept"],
                [[f"`{f}`", n, self.dropped_from(f), n - self.dropped_from(f)] for f, n in self.rows.items()]))
        if self.dropped:
            parts.append(_markdown_table(["file", "reason", "rows dropped"],
                                         [[f"`{f}`", r, n] for (f, r), n in self.dropped.items()]))
        for title, items in (("Errors", self.errors), ("Warnings", self.warnings)):
            if items:
                parts.append(f"{title}:\n\n" + "\n".join(f"- {_md_escape(i)}" for i in items))
        return "\n\n".join(parts)

    def __str__(self) -> str:
        return self.summary()


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("*", "\\*")


def _markdown_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


# ---- public entry points ----------------------------------------------------------------------------------------
def validate_bundle(
    root: str | Path,
    bad_rows: str = "error",
    check_images: bool = True,
    progress: bool = True,
    *,
    raise_on_error: bool = True,
    min_image_side: int = MIN_IMAGE_SIDE,
) -> ValidationReport:
    """Check every file of the city bundle at `root` against the format (docs/data_format.md).

    bad_rows: "error" reports every bad row as an error; "drop" drops rows whose problem concerns only that row and
        reports the counts as warnings (`report.dropped`, cleaned tables in `report.tables`).
    check_images: decode every referenced image with Pillow (otherwise only check that the files exist).
    raise_on_error: raise `BundleValidationError` (a `BundleError`) listing all errors, one per line; if False the
        report is returned and `report.ok` tells whether the bundle is usable.
    """
    if bad_rows not in BAD_ROWS:
        raise ValueError(f"bad_rows must be one of {BAD_ROWS}, got {bad_rows!r}")
    checker = _Checker(Path(root), bad_rows, check_images, progress, min_image_side)
    report = checker.run()
    if raise_on_error:
        report.raise_if_errors()
    return report


def import_bundle(
    src: str | Path,
    dest: str | Path,
    bad_rows: str = "error",
    progress: bool = True,
    check_images: bool = True,
    link_images: bool = True,
) -> ValidationReport:
    """Validate the bundle `src` and write it, cleaned, to `dest` atomically (what `prepare` does for a folder).

    Tables from which rows were dropped are rewritten, the others and city.json/boundary.geojson are copied as they
    are; the images that the kept rows reference are hard-linked (source and copy then share one file; copied when the
    file system cannot link, or always with `link_images=False`). `dest` is replaced as a whole, and only once
    everything is written; on failure no partial folder is left behind.
    """
    from tqdm.auto import tqdm

    from musecl.storage import atomic_dir

    src, dest = Path(src).resolve(), Path(dest).resolve()
    if dest == src or dest.is_relative_to(src) or src.is_relative_to(dest):
        raise BundleError(f"import_bundle: destination {dest} must be outside the source bundle {src} (and not contain it)")
    report = validate_bundle(src, bad_rows=bad_rows, check_images=check_images, progress=progress)
    with atomic_dir(dest) as tmp:
        for file in (schema.CITY_FILE, schema.BOUNDARY_FILE):
            shutil.copy2(src / file, tmp / file)
        images: list[str] = []
        for name, spec in schema.TABLES.items():
            if not (src / spec.file).is_file():
                continue
            if name in report.tables:
                report.tables[name].to_parquet(tmp / spec.file, index=False)
            else:
                shutil.copy2(src / spec.file, tmp / spec.file)
            if name in _IMAGE_TABLES:
                table = report.tables.get(name)
                paths = table["path"] if table is not None else pd.read_parquet(src / spec.file, columns=["path"])["path"]
                images += paths.astype(str).tolist()
        for rel in tqdm(sorted(set(images)), desc="copying images", unit="img", disable=not progress):
            _link_or_copy(src / rel, tmp / rel, link_images)
    return report


def _link_or_copy(source: Path, target: Path, link: bool = True) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not supported
            pass
    shutil.copy2(source, target)


# ---- the checks -------------------------------------------------------------------------------------------------
class _Checker:
    """One validation run. Each table is read once; `ok[table]` marks rows with no problem found so far, so a row is
    reported (and dropped) for its first problem only and later checks look at clean rows."""

    def __init__(self, root: Path, bad_rows: str, check_images: bool, progress: bool, min_image_side: int) -> None:
        self.root = root
        self.drop = bad_rows == "drop"
        self.check_images = check_images
        self.progress = progress
        self.min_image_side = min_image_side
        self.report = ValidationReport(root=root, bad_rows=bad_rows)
        self.raw: dict[str, pd.DataFrame] = {}  # tables as read (values shown in messages)
        self.frames: dict[str, pd.DataFrame] = {}  # numeric/datetime columns converted
        self.ok: dict[str, np.ndarray] = {}
        self.converted: dict[str, list[str]] = defaultdict(list)  # table -> columns converted from text
        self.usable: set[str] = set()  # tables whose required columns are present with usable types
        self.meta: dict[str, Any] = {}
        self.resolution: int | None = None
        self.boundary = None  # shapely geometry (prepared)
        self.region_ids: np.ndarray | None = None  # valid region ids (str)
        self.region_cells: np.ndarray | None = None  # the same as uint64 H3 cells
        self.sv_regions: np.ndarray | None = None

    # -- reporting --------------------------------------------------------------------------------------------------
    def error(self, message: str) -> None:
        self.report.errors.append(message)

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)

    def rows(
        self,
        table: str,
        mask: np.ndarray,
        problem: str,
        expected: str,
        columns: Sequence[str],
        reason: str,
        droppable: bool = True,
        context: Sequence[str] = (),
    ) -> None:
        """Report the rows of `table` where `mask` holds (among rows not yet reported): first row, value, count.

        `columns` are the columns at fault, `context` further columns whose values identify the row (region_id).
        """
        mask = np.asarray(mask, dtype=bool) & self.ok[table]
        n = int(mask.sum())
        if not n:
            return
        file = schema.TABLES[table].file
        first = int(np.flatnonzero(mask)[0])
        raw = self.raw[table]
        value = ", ".join(f"{c}={_show(raw[c].iloc[first])}" for c in (*columns, *context))
        where = f"column '{columns[0]}'" if len(columns) == 1 else "columns " + "/".join(f"'{c}'" for c in columns)
        message = (f"{file}: {where}: {n} row(s) {problem} (first at row {first}: {value}); expected {expected}")
        self.ok[table] &= ~mask
        if self.drop and droppable:
            self.warn(f"{message} -> dropped {n} row(s)")
            key = (file, reason)
            self.report.dropped[key] = self.report.dropped.get(key, 0) + n
        else:
            self.error(message)

    # -- driver -----------------------------------------------------------------------------------------------------
    def run(self) -> ValidationReport:
        if not self.root.is_dir():
            self.error(f"{self.root}: not a folder (expected the city bundle folder holding {schema.CITY_FILE}, "
                       f"{schema.BOUNDARY_FILE} and the tables of docs/data_format.md)")
            return self.report
        self.check_meta()
        self.check_boundary()
        self.read_tables()
        self.check_regions()
        self.check_pois()
        self.check_mobility()
        self.check_images_tables()
        self.check_indicators()
        self.check_latents()
        self.check_coverage()
        self.collect_cleaned()
        return self.report

    # -- city.json --------------------------------------------------------------------------------------------------
    def check_meta(self) -> None:
        path = self.root / schema.CITY_FILE
        file = schema.CITY_FILE
        if not path.is_file():
            self.error(f"{file}: missing (expected a JSON object with keys {list(REQUIRED_META)})")
            return
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            self.error(f"{file}: not valid JSON ({err})")
            return
        if not isinstance(meta, dict):
            self.error(f"{file}: expected a JSON object at the top level, found {type(meta).__name__}")
            return
        self.meta = meta
        for key in REQUIRED_META:
            if key not in meta:
                self.error(f"{file}: missing key '{key}'{_closest(key, list(meta))} (expected keys {list(REQUIRED_META)})")
        if "name" in meta:
            self.report.city = str(meta["name"])
        res = meta.get("h3_resolution")
        if res is not None:
            if isinstance(res, bool) or not isinstance(res, int) or not 0 <= res <= 15:
                self.error(f"{file}: key 'h3_resolution' is {res!r}; expected an integer H3 resolution in 0..15 "
                           "(8: ~0.74 km² hexagons, 7: ~5.2 km²)")
            else:
                self.resolution = res
                self.report.h3_resolution = res
        crs = meta.get("crs", schema.WGS84_CRS)
        if str(crs).upper() not in (schema.WGS84_CRS, "OGC:CRS84", "WGS84", "WGS 84", "CRS84"):
            self.error(f"{file}: key 'crs' is {crs!r}; expected {schema.WGS84_CRS!r} (all coordinates are WGS84 lon/lat)")
        version = meta.get("format_version", schema.FORMAT_VERSION)
        if not isinstance(version, int) or version > schema.FORMAT_VERSION:
            self.error(f"{file}: key 'format_version' is {version!r}; this musecl reads format version "
                       f"{schema.FORMAT_VERSION} and older")
        indicators = meta.get("indicators")
        if indicators is None:
            return
        if not isinstance(indicators, dict):
            self.error(f"{file}: key 'indicators' is a {type(indicators).__name__}; expected an object "
                       "{name: {transform, unit, description}}")
            return
        for name, spec in indicators.items():
            if not isinstance(spec, dict):
                self.error(f"{file}: indicators.{name} is {spec!r}; expected an object {{transform, unit, description}}")
                continue
            transform = spec.get("transform")
            if transform not in schema.TRANSFORMS:
                self.error(f"{file}: indicators.{name}.transform is {transform!r}; expected one of "
                           f"{list(schema.TRANSFORMS)}")
            for key in ("unit", "description"):
                if key in spec and not isinstance(spec[key], str):
                    self.error(f"{file}: indicators.{name}.{key} is {spec[key]!r}; expected a string")

    # -- boundary.geojson -------------------------------------------------------------------------------------------
    def check_boundary(self) -> None:
        import geopandas as gpd
        import shapely

        file = schema.BOUNDARY_FILE
        path = self.root / file
        if not path.is_file():
            self.error(f"{file}: missing (expected a GeoJSON file with the city's (Multi)Polygon boundary, WGS84)")
            return
        try:
            frame = gpd.read_file(path)
        except Exception as err:  # pyogrio raises several kinds
            self.error(f"{file}: cannot read as GeoJSON ({_short(err)})")
            return
        geoms = frame.geometry[frame.geometry.notna()] if frame.geometry is not None else []
        if len(geoms) == 0:
            self.error(f"{file}: holds no geometry; expected one (Multi)Polygon feature")
            return
        kinds = set(geoms.geom_type)
        if not kinds <= {"Polygon", "MultiPolygon"}:
            self.error(f"{file}: geometry type(s) {sorted(kinds)}; expected Polygon or MultiPolygon")
            return
        if frame.crs is not None and not frame.crs.equals("EPSG:4326") and not frame.crs.equals("OGC:CRS84"):
            self.error(f"{file}: CRS is {frame.crs.to_string()}; expected WGS84 lon/lat ({schema.WGS84_CRS})")
            return
        invalid = ~shapely.is_valid(geoms.to_numpy())
        if invalid.any():
            reason = shapely.is_valid_reason(geoms.to_numpy()[invalid][0])
            self.error(f"{file}: {int(invalid.sum())} invalid polygon(s) ({reason}); expected a valid polygon "
                       "(shapely.make_valid can repair it)")
            return
        geom = shapely.union_all(geoms.to_numpy())
        minx, miny, maxx, maxy = geom.bounds
        if not (-180 <= minx and maxx <= 180 and -90 <= miny and maxy <= 90):
            self.error(f"{file}: bounds ({minx}, {miny}, {maxx}, {maxy}) exceed lon/lat ranges; expected WGS84 degrees "
                       "(lon in [-180, 180], lat in [-90, 90]) in (lon, lat) order")
            return
        shapely.prepare(geom)
        self.boundary = geom

    # -- reading ----------------------------------------------------------------------------------------------------
    def read_tables(self) -> None:
        present = {name: (self.root / spec.file).is_file() for name, spec in schema.TABLES.items()}
        if not present["trips"] and not present["trajectories"]:
            self.error(f"{schema.TRIPS_FILE} / {schema.TRAJECTORIES_FILE}: both missing; expected at least one "
                       f"(trips: columns {schema.TRIPS.required_columns}; trajectories: columns "
                       f"{schema.TRAJECTORIES.required_columns})")
        for name, spec in schema.TABLES.items():
            if not present[name]:
                if spec.required:
                    self.error(f"{spec.file}: missing (expected the {name.replace('_', '-')} table with columns "
                               f"{spec.required_columns})")
                continue
            try:
                frame = pd.read_parquet(self.root / spec.file)
            except Exception as err:  # pyarrow raises many kinds
                self.error(f"{spec.file}: cannot read as parquet ({_short(err)})")
                continue
            frame = frame.reset_index(drop=True)
            self.report.rows[spec.file] = len(frame)
            self.raw[name] = frame
            self.frames[name] = frame.copy()
            self.ok[name] = np.ones(len(frame), dtype=bool)
            if self.check_columns(name):
                self.usable.add(name)
        mobility = [schema.TABLES[n].file for n in ("trips", "trajectories") if n in self.raw]
        if mobility and all(self.report.rows[f] == 0 for f in mobility):
            self.error(f"{' and '.join(mobility)}: no rows; expected some mobility data (trips or GPS points)")

    def check_columns(self, name: str) -> bool:
        """Presence and types of the table's schema columns; converts numeric/datetime columns in `frames`."""
        spec = schema.TABLES[name]
        frame = self.frames[name]
        columns = [str(c) for c in frame.columns]
        expected = [c.name for c in spec.columns]
        usable = True
        for col in spec.required_columns:
            if col not in columns:
                extra = [c for c in columns if c not in expected]
                self.error(f"{spec.file}: missing column '{col}'{_closest(col, extra, columns)} "
                           f"(expected columns {spec.required_columns})")
                usable = False
        if not usable:
            return False
        for col in spec.columns:
            if col.name not in columns or col.kind == "geometry":
                continue
            if col.kind == "str":
                usable &= self.check_text(name, col)
            elif col.kind in ("float", "int"):
                usable &= self.check_numeric(name, col)
            elif col.kind == "datetime":
                usable &= self.check_datetime(name, col)
        if len(frame) == 0 and name not in ("trips", "trajectories"):
            self.error(f"{spec.file}: has no rows; expected at least one")
        if name in ("indicators", "latents"):
            usable &= self.check_value_columns(name)
        for key in spec.unique:
            if key in columns:
                self.check_unique(name, key)
        return usable

    def check_text(self, name: str, col: schema.Column) -> bool:
        spec = schema.TABLES[name]
        series = self.frames[name][col.name]
        if not _is_text(series):
            found = pd.api.types.infer_dtype(series, skipna=True)
            self.error(f"{spec.file}: column '{col.name}' holds {found} values (dtype {series.dtype}); expected strings "
                       f"({col.description}); convert it with .astype(str)")
            return False
        if col.name in _KEY_COLUMNS.get(name, ()):
            missing = (series.isna() | (series.astype("string").str.strip() == "")).to_numpy(dtype=bool)
            self.rows(name, missing, "are empty", f"a non-empty id in every row ({col.description})",
                      [col.name], reason="missing id", droppable=False)
        return True

    def check_numeric(self, name: str, col: schema.Column) -> bool:
        spec = schema.TABLES[name]
        series = self.frames[name][col.name]
        if pd.api.types.is_bool_dtype(series) or not (
            pd.api.types.is_numeric_dtype(series) or _is_text(series) or series.dtype == object
        ):
            self.error(f"{spec.file}: column '{col.name}' has dtype {series.dtype}; expected {col.kind} numbers "
                       f"({col.description})")
            return False
        values = pd.to_numeric(series, errors="coerce").astype("float64")
        if not pd.api.types.is_numeric_dtype(series):
            non_numeric = (values.isna() & series.notna()).to_numpy()
            is_coordinate = col.name in ("lon", "lat") or col.name.endswith(("_lon", "_lat"))
            if not self.drop or name == "regions":  # regions are never rewritten, so never converted
                bad = int(non_numeric.sum())
                detail = ""
                if bad:
                    first = int(np.flatnonzero(non_numeric)[0])
                    detail = f"; {bad} value(s) are not numbers (first at row {first}: {_show(series.iloc[first])})"
                self.error(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}){detail}; expected "
                           f"{col.kind} numbers ({col.description})")
                self.ok[name] &= ~non_numeric
            else:
                self.warn(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}); converted to numbers")
                self.converted[name].append(col.name)
                reason = "non-numeric coordinates" if is_coordinate else f"non-numeric {col.name}"
                self.rows(name, non_numeric, "are not numbers", f"{col.kind} numbers ({col.description})",
                          [col.name], reason=reason, droppable=name != "regions")
        self.frames[name][col.name] = values
        if col.kind == "int":
            arr = values.to_numpy()
            bad = ~(np.isfinite(arr) & (arr >= 0) & (arr == np.round(arr)))
            self.rows(name, bad, "are not non-negative integers", f"non-negative integer counts ({col.description})",
                      [col.name], reason=f"bad {col.name}", droppable=False)
        return True

    def check_datetime(self, name: str, col: schema.Column) -> bool:
        spec = schema.TABLES[name]
        series = self.frames[name][col.name]
        if pd.api.types.is_datetime64_any_dtype(series):
            values = series
        elif _is_text(series) or series.dtype == object:
            try:
                values = pd.to_datetime(series, errors="coerce", format="ISO8601")
            except (ValueError, TypeError) as err:  # e.g. mixed time zones
                self.error(f"{spec.file}: column '{col.name}' holds text that cannot be read as one timestamp column "
                           f"({_short(err)}); expected ISO 8601 timestamps with one time zone (or none)")
                return False
            unparseable = (values.isna() & series.notna()).to_numpy()
            if not self.drop:
                n = int(unparseable.sum())
                detail = ""
                if n:
                    first = int(np.flatnonzero(unparseable)[0])
                    detail = f"; {n} value(s) cannot be parsed as times (first at row {first}: {_show(series.iloc[first])})"
                self.error(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}){detail}; expected "
                           "timestamps (a parquet timestamp column: pd.to_datetime(...) before writing)")
                self.ok[name] &= ~unparseable
            else:
                self.warn(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}); converted to timestamps")
                self.converted[name].append(col.name)
                self.rows(name, unparseable, "cannot be parsed as times",
                          "ISO 8601 timestamps such as '2024-03-04T08:15:00'", [col.name], reason="unparseable time")
        else:
            self.error(f"{spec.file}: column '{col.name}' has dtype {series.dtype}; expected timestamps "
                       f"({col.description})")
            return False
        self.frames[name][col.name] = values
        if col.required:
            self.rows(name, values.isna().to_numpy(), "are missing (NaT)", f"a timestamp in every row ({col.description})",
                      [col.name], reason=f"missing {col.name}")
        return True

    def check_value_columns(self, name: str) -> bool:
        """indicators/latents: every column besides region_id is a float column."""
        spec = schema.TABLES[name]
        frame = self.frames[name]
        usable = True
        for col in frame.columns:
            if col == REGION_ID:
                continue
            series = frame[col]
            if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
                self.error(f"{spec.file}: column '{col}' has dtype {series.dtype}; expected float numbers "
                           f"(one numeric column per {'indicator' if name == 'indicators' else 'latent variable'})")
                usable = False
        return usable

    def check_unique(self, name: str, key: str) -> None:
        spec = schema.TABLES[name]
        series = self.raw[name][key]
        dup = series.duplicated(keep=False) & series.notna()
        if dup.any():
            first_value = series[dup].iloc[0]
            where = np.flatnonzero((series == first_value).to_numpy(dtype=bool))
            n_values = int(series[dup].nunique())
            self.error(f"{spec.file}: column '{key}': {n_values} value(s) occur more than once, in {int(dup.sum())} rows "
                       f"(first {_show(first_value)} at rows {', '.join(map(str, where[:MAX_EXAMPLES]))}); "
                       f"expected unique ids")

    # -- coordinates and location -----------------------------------------------------------------------------------
    def check_points(self, name: str, lon_col: str, lat_col: str) -> None:
        """Missing, out-of-range and outside-the-city coordinates (vectorised)."""
        import shapely

        frame = self.frames[name]
        lon = frame[lon_col].to_numpy(dtype=np.float64, na_value=np.nan)
        lat = frame[lat_col].to_numpy(dtype=np.float64, na_value=np.nan)
        cols = [lon_col, lat_col]
        self.rows(name, ~(np.isfinite(lon) & np.isfinite(lat)), "have missing (NaN) or infinite coordinates",
                  "finite WGS84 degrees", cols, reason="missing coordinates")
        out_of_range = (np.abs(lat) > 90) | (np.abs(lon) > 180)
        self.rows(name, out_of_range, "have out-of-range coordinates",
                  "-180 <= lon <= 180 and -90 <= lat <= 90 (WGS84 degrees, lon/lat not swapped or projected)", cols,
                  reason="out-of-range coordinates")
        if self.boundary is None:
            return
        idx = np.flatnonzero(self.ok[name])
        inside = shapely.intersects_xy(self.boundary, lon[idx], lat[idx])
        outside_idx = idx[~inside]
        if self.region_cells is not None and len(outside_idx) and self.resolution is not None:
            from musecl.data.regions import latlng_to_cells

            # A point just outside the boundary but in a region's hexagon still belongs to the city.
            cells = latlng_to_cells(lat[outside_idx], lon[outside_idx], self.resolution)
            outside_idx = outside_idx[~np.isin(cells, self.region_cells)]
        outside = np.zeros(len(frame), dtype=bool)
        outside[outside_idx] = True
        self.rows(name, outside, "lie outside the city",
                  f"points inside {schema.BOUNDARY_FILE} or inside one of the regions' hexagons", cols,
                  reason="outside the city")

    # -- regions.parquet --------------------------------------------------------------------------------------------
    def check_regions(self) -> None:
        import geopandas as gpd
        import h3
        import shapely

        from musecl.data.regions import cell_polygons

        name, file = "regions", schema.REGIONS_FILE
        if name not in self.usable:
            return
        frame = self.frames[name]
        ids = frame[REGION_ID].astype("string").fillna("").to_numpy(dtype=object)
        # One Python call per region (thousands at most), never per point.
        valid = np.array([bool(h3.is_valid_cell(c)) for c in ids], dtype=bool)
        self.rows(name, ~valid, "are not valid H3 cell ids",
                  "H3 cell indexes as hex strings, e.g. '8828308281fffff' (h3.latlng_to_cell)", [REGION_ID],
                  reason="invalid H3 id", droppable=False)
        if self.resolution is not None:
            res = np.array([h3.get_resolution(c) if v else -1 for c, v in zip(ids, valid)])
            self.rows(name, valid & (res != self.resolution), f"are H3 cells at another resolution",
                      f"cells at the h3_resolution {self.resolution} declared in {schema.CITY_FILE}", [REGION_ID],
                      reason="wrong H3 resolution", droppable=False)
        good = self.ok[name].copy()
        self.region_ids = ids[good].astype(str)
        self.region_cells = np.array([h3.str_to_int(c) for c in self.region_ids], dtype=np.uint64)
        if not good.any():
            return
        # The centre lon/lat must be the cell's centre.
        centres = np.array([h3.cell_to_latlng(c) for c in self.region_ids], dtype=np.float64).reshape(-1, 2)
        lon = frame["lon"].to_numpy(dtype=np.float64, na_value=np.nan)
        lat = frame["lat"].to_numpy(dtype=np.float64, na_value=np.nan)
        edge_deg = h3.average_hexagon_edge_length(self.resolution if self.resolution is not None else 8, "km") / 111.32
        off = np.full(len(frame), np.inf)
        off[good] = np.hypot((lon[good] - centres[:, 1]) * np.cos(np.radians(centres[:, 0])), lat[good] - centres[:, 0])
        self.rows(name, good & ~(off <= 0.1 * edge_deg), "have lon/lat away from their H3 cell's centre",
                  "lon/lat = h3.cell_to_latlng(region_id) (within 10% of an edge length)", ["lon", "lat"], context=[REGION_ID],
                  reason="wrong region centre", droppable=False)
        # The geometry must be the cell's hexagon.
        try:
            geo = gpd.read_parquet(self.root / file)
        except Exception as err:
            self.error(f"{file}: cannot read as GeoParquet ({_short(err)}); expected a GeoParquet file with a "
                       "'geometry' column (GeoDataFrame.to_parquet)")
            geo = None
        if geo is not None:
            if geo.crs is None or not geo.crs.equals(schema.WGS84_CRS):
                found = geo.crs.to_string() if geo.crs is not None else "none"
                self.error(f"{file}: CRS is {found}; expected {schema.WGS84_CRS} (GeoDataFrame.set_crs('EPSG:4326'))")
            geoms = np.asarray(geo.geometry.array, dtype=object)[good]
            expected = cell_polygons(self.region_ids)
            with np.errstate(all="ignore"):
                diff = shapely.area(shapely.symmetric_difference(geoms, expected)) / shapely.area(expected)
            mismatch = np.zeros(len(frame), dtype=bool)
            mismatch[np.flatnonzero(good)] = ~(np.nan_to_num(diff, nan=np.inf) < 0.01)
            self.rows(name, mismatch, "have a geometry that is not their H3 cell's hexagon",
                      "geometry = the cell's boundary polygon (musecl.data.regions.regions_frame builds it)",
                      [REGION_ID], reason="wrong region geometry", droppable=False)
        if self.boundary is not None:
            inside = shapely.intersects_xy(self.boundary, centres[:, 1], centres[:, 0])
            outside = np.zeros(len(frame), dtype=bool)
            outside[np.flatnonzero(good)] = ~inside
            self.rows(name, outside, f"have their centre outside {schema.BOUNDARY_FILE}",
                      "regions = the H3 cells whose centre lies inside the boundary", [REGION_ID], context=["lon", "lat"],
                      reason="region outside the boundary", droppable=False)

    # -- pois.parquet -----------------------------------------------------------------------------------------------
    def check_pois(self) -> None:
        name = "pois"
        if name not in self.usable:
            return
        self.check_points(name, "lon", "lat")
        category = self.frames[name]["category"].astype("string")
        bad = ~category.str.fullmatch(r"[^;]*[^;\s][^;]*;[^;]*[^;\s][^;]*").fillna(False).to_numpy(dtype=bool)
        self.rows(name, bad, "have a category not of the form 'level1;level2'",
                  "two non-empty levels separated by one ';', e.g. 'food;restaurant'", ["category"],
                  reason="bad category")

    # -- trips.parquet / trajectories.parquet -----------------------------------------------------------------------
    def check_mobility(self) -> None:
        if "trips" in self.usable:
            for lon_col, lat_col in _POINTS["trips"]:
                self.check_points("trips", lon_col, lat_col)
            frame = self.frames["trips"]
            if "end_time" in frame.columns and pd.api.types.is_datetime64_any_dtype(frame["end_time"]):
                try:
                    backwards = (frame["end_time"] < frame["start_time"]).fillna(False).to_numpy(dtype=bool)
                except TypeError as err:  # mixing time-zone-aware and naive columns
                    self.error(f"{schema.TRIPS_FILE}: columns 'start_time'/'end_time' cannot be compared ({err}); "
                               "expected both with the same time zone (or both naive)")
                else:
                    self.rows("trips", backwards, "end before they start", "end_time >= start_time",
                              ["start_time", "end_time"], reason="end_time before start_time")
        if "trajectories" in self.usable:
            self.check_points("trajectories", "lon", "lat")

    # -- remote_sensing.parquet / street_view.parquet ---------------------------------------------------------------
    def check_images_tables(self) -> None:
        for name, folder in _IMAGE_TABLES.items():
            if name not in self.usable:
                continue
            if name == "street_view":
                self.check_points(name, "lon", "lat")
                frame = self.frames[name]
                if "heading" in frame.columns:
                    heading = frame["heading"].to_numpy(dtype=np.float64, na_value=np.nan)
                    self.rows(name, ~np.isnan(heading) & ~((heading >= 0) & (heading < 360)),
                              "have a heading outside [0, 360)", "degrees clockwise from north in [0, 360) (or empty)",
                              ["heading"], reason="bad heading")
            else:
                ids = self.frames[name][REGION_ID].astype("string")
                known = ids.isin(self.region_ids).to_numpy(dtype=bool) if self.region_ids is not None else None
                if known is not None:
                    self.rows(name, ~known, f"refer to a region not in {schema.REGIONS_FILE}",
                              f"a region_id of {schema.REGIONS_FILE}", [REGION_ID], reason="unknown region_id")
            self.check_image_files(name, folder)
        if "street_view" in self.usable and self.region_ids is not None and self.resolution is not None:
            from musecl.data.regions import assign_points_to_regions

            frame = self.frames["street_view"]
            ok = self.ok["street_view"]
            regions = np.full(len(frame), None, dtype=object)
            regions[ok] = assign_points_to_regions(frame["lon"].to_numpy(np.float64)[ok],
                                                   frame["lat"].to_numpy(np.float64)[ok], self.region_ids,
                                                   self.resolution)
            self.sv_regions = regions

    def check_image_files(self, name: str, folder: str) -> None:
        """Paths stay under `folder`, the files exist (one directory walk) and decode with Pillow."""
        file = schema.TABLES[name].file
        paths = self.frames[name]["path"].astype("string")
        bad_path = (
            paths.isna()
            | ~paths.str.startswith(folder + "/").fillna(False)
            | paths.str.contains(r"(?:^|/)\.\.(?:/|$)|\\", regex=True).fillna(False)
        ).to_numpy(dtype=bool)
        self.rows(name, bad_path, f"have an image path outside {folder}/",
                  f"a relative path inside the bundle under {folder}/ (no absolute paths, no '..')", ["path"],
                  reason="image path outside the bundle")
        on_disk = _files_under(self.root, folder)
        exists = paths.isin(on_disk).to_numpy(dtype=bool)
        self.rows(name, ~exists, "reference an image file that does not exist",
                  f"an existing file, relative to the bundle folder {self.root}", ["path"], reason="missing image file")
        referenced = sorted(set(paths[self.ok[name]].tolist()))
        unreferenced = on_disk - set(paths.dropna().tolist())
        if unreferenced:
            self.warn(f"{folder}/: {len(unreferenced)} file(s) are not referenced by {file} and are ignored "
                      f"(first: {sorted(unreferenced)[0]})")
        if not self.check_images or not referenced:
            return
        results = _decode_images(self.root, referenced, self.progress, desc=f"decoding {folder}")
        failures = {p: err for p, (err, _) in zip(referenced, results) if err is not None}
        sides = {p: side for p, (err, side) in zip(referenced, results) if err is None}
        unreadable = paths.isin(list(failures)).to_numpy(dtype=bool)
        if (unreadable & self.ok[name]).any():
            first = paths.iloc[int(np.flatnonzero(unreadable & self.ok[name])[0])]
            self.rows(name, unreadable, f"reference a file Pillow cannot decode (first error: {failures[first]})",
                      "a readable image (PNG, JPEG, ...)", ["path"], reason="unreadable image")
        side = paths.map(sides).astype("float64").fillna(np.inf).to_numpy()
        self.rows(name, side < self.min_image_side, f"reference an image smaller than {self.min_image_side} px",
                  f"images at least {self.min_image_side} px wide and high", ["path"], reason="image too small")

    # -- indicators.parquet / latents.parquet -----------------------------------------------------------------------
    def check_indicators(self) -> None:
        name, file = "indicators", schema.INDICATORS_FILE
        if name not in self.usable:
            return
        frame = self.frames[name]
        self.check_region_keys(name)
        present = [c for c in frame.columns if c != REGION_ID]
        if not isinstance(self.meta.get("indicators"), dict):  # city.json's problem is reported already
            self.check_finite(name, present, "indicator")
            return
        declared = self.meta["indicators"]
        for ind in declared:
            if ind not in present:
                self.error(f"{file}: missing column '{ind}' declared in {schema.CITY_FILE} indicators"
                           f"{_closest(ind, [p for p in present if p not in declared])}; expected one column per "
                           "declared indicator")
        for col in present:
            if col not in declared:
                self.error(f"{file}: column '{col}' is not declared in {schema.CITY_FILE} 'indicators'; expected "
                           f"an entry {{\"{col}\": {{\"transform\": \"log1p\" or \"identity\", \"unit\": ..., "
                           "\"description\": ...}}")
        self.check_finite(name, present, "indicator")
        for col in present:
            spec = declared.get(col)
            if isinstance(spec, dict) and spec.get("transform") == "log1p":
                values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
                self.rows(name, values < 0, f"are negative but its transform is log1p",
                          "values >= 0 for a log1p indicator (or declare transform 'identity')", [col], context=[REGION_ID],
                          reason="negative indicator", droppable=False)

    def check_latents(self) -> None:
        if "latents" in self.usable:
            self.check_region_keys("latents")
            self.check_finite("latents", [c for c in self.frames["latents"].columns if c != REGION_ID], "latent")

    def check_region_keys(self, name: str) -> None:
        """Every region has a row and every row a known region (structural: never dropped)."""
        if self.region_ids is None:
            return
        file = schema.TABLES[name].file
        ids = self.frames[name][REGION_ID].astype("string")
        self.rows(name, ~ids.isin(self.region_ids).to_numpy(dtype=bool), f"refer to a region not in "
                  f"{schema.REGIONS_FILE}", f"only the region_ids of {schema.REGIONS_FILE}", [REGION_ID],
                  reason="unknown region_id", droppable=False)
        missing = np.setdiff1d(self.region_ids, ids.dropna().to_numpy(dtype=object).astype(str))
        if len(missing):
            self.error(f"{file}: {len(missing)} of {len(self.region_ids)} regions of {schema.REGIONS_FILE} have no row "
                       f"(first: {', '.join(missing[:MAX_EXAMPLES])}); expected one row per region")

    def check_finite(self, name: str, columns: list[str], what: str) -> None:
        frame = self.frames[name]
        for col in columns:
            if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
                continue
            values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            self.rows(name, ~np.isfinite(values), "are NaN or infinite", f"a finite {what} value for every region",
                      [col], context=[REGION_ID], reason=f"non-finite {what}", droppable=False)

    # -- regions without images/POIs --------------------------------------------------------------------------------
    def check_coverage(self) -> None:
        if self.region_ids is None or not len(self.region_ids):
            return
        n = len(self.region_ids)
        if "remote_sensing" in self.usable:
            rs = self.frames["remote_sensing"][REGION_ID].astype("string")[self.ok["remote_sensing"]]
            without = np.setdiff1d(self.region_ids, rs.dropna().to_numpy(dtype=object).astype(str))
            if len(without):
                self.error(f"{schema.REMOTE_SENSING_FILE}: {len(without)} of {n} regions have no remote-sensing image "
                           f"(first: {', '.join(without[:MAX_EXAMPLES])}); expected at least one usable image per region "
                           f"of {schema.REGIONS_FILE}")
        if self.sv_regions is not None:
            located = self.sv_regions[self.ok["street_view"]]
            without = np.setdiff1d(self.region_ids, located[located != None].astype(str))  # noqa: E711
            if len(without):
                self.error(f"{schema.STREET_VIEW_FILE}: {len(without)} of {n} regions have no street-view image "
                           f"(first: {', '.join(without[:MAX_EXAMPLES])}); expected at least one usable image whose "
                           "lon/lat lies in each region's hexagon")
        if "pois" in self.usable and self.resolution is not None:
            from musecl.data.regions import assign_points_to_regions

            frame, ok = self.frames["pois"], self.ok["pois"]
            located = assign_points_to_regions(frame["lon"].to_numpy(np.float64)[ok],
                                               frame["lat"].to_numpy(np.float64)[ok], self.region_ids, self.resolution)
            without = np.setdiff1d(self.region_ids, located[located != None].astype(str))  # noqa: E711
            if len(without):
                self.warn(f"{schema.POIS_FILE}: {len(without)} of {n} regions contain no POI (first: "
                          f"{', '.join(without[:MAX_EXAMPLES])}); their POI embedding will be empty")

    def collect_cleaned(self) -> None:
        """The tables to write when rows were dropped or columns converted (drop mode only)."""
        if not self.drop:
            return
        for name, frame in self.frames.items():
            if name == "regions" or (name not in self.converted and self.ok[name].all()):
                continue  # regions are never dropped or converted; unchanged tables are copied as they are
            table = self.raw[name].copy()
            for col in self.converted.get(name, ()):
                table[col] = frame[col]
            self.report.tables[name] = table[self.ok[name]].reset_index(drop=True)


# ---- helpers ----------------------------------------------------------------------------------------------------
def _is_text(series: pd.Series) -> bool:
    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def _show(value: Any) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value is None or value is pd.NA or value is pd.NaT:
        return "empty"
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float):
        return format(value, ".10g")
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def _closest(wanted: str, candidates: list[str], all_columns: list[str] | None = None) -> str:
    """' (found 'lng'; rename it to 'lon')' for the closest candidate name, or the names found."""
    lowered = {c.lower(): c for c in candidates}
    match = next((lowered[a] for a in _ALIASES.get(wanted, ()) if a in lowered), None)
    if match is None:
        close = difflib.get_close_matches(wanted.lower(), list(lowered), n=1, cutoff=0.6)
        match = lowered[close[0]] if close else None
    if match is not None:
        return f" (found '{match}'; rename it to '{wanted}')"
    if all_columns is not None:
        return f" (found columns {all_columns})"
    return ""


def _files_under(root: Path, folder: str) -> set[str]:
    """Bundle-relative posix paths of every file under `folder` (one walk instead of one stat per row)."""
    base = root / folder
    found: set[str] = set()
    for dirpath, _, files in os.walk(base, followlinks=True):  # image folders are often links to big disks
        rel = Path(dirpath).relative_to(root).as_posix()
        found.update(f"{rel}/{f}" for f in files)
    return found


def _decode_one(path: Path) -> tuple[str | None, int]:
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.load()  # decodes every pixel: truncated or corrupt files fail here
            return None, min(img.size)
    except Exception as err:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        detail = _short(err).replace(f"'{path}'", "").replace(str(path), "").strip()
        return f"{type(err).__name__}: {detail}" if detail else type(err).__name__, 0


def _decode_images(root: Path, paths: list[str], progress: bool, desc: str) -> list[tuple[str | None, int]]:
    """Decode each image once; Pillow releases the GIL while decoding, so a few threads help."""
    from tqdm.auto import tqdm

    if not paths:
        return []
    workers = max(1, min(8, (os.cpu_count() or 1)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_decode_one, (root / p for p in paths), chunksize=64), total=len(paths), desc=desc,
                         unit="img", disable=not progress))


# ---- command line -----------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musecl.data.validate",
        description="Check a city bundle folder against docs/data_format.md; exit status 1 when it has errors.")
    parser.add_argument("path", help="the city bundle folder")
    parser.add_argument("--drop", action="store_true",
                        help="drop bad rows (points outside the city, unreadable images, ...) and count them instead "
                             "of reporting them as errors")
    parser.add_argument("--no-images", action="store_true", help="only check that image files exist; do not decode them")
    parser.add_argument("--markdown", action="store_true", help="print the report as Markdown")
    args = parser.parse_args(argv)
    report = validate_bundle(args.path, bad_rows="drop" if args.drop else "error", check_images=not args.no_images,
                             progress=sys.stderr.isatty(), raise_on_error=False)
    print(report.to_markdown() if args.markdown else report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
