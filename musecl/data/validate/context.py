"""The state one validation run shares between its checks, and how a check reports a problem.

`Context` holds the bundle's tables as read (`raw`, whose values messages quote) and as converted (`frames`), the mask
`ok[table]` of rows with no problem found so far, and what earlier checks learned that later ones need (city.json,
the boundary, the valid region ids, the street-view images' regions). `Context.rows` is the one place where bad rows
become an error or, with ``bad_rows="drop"``, a counted warning: a row is reported (and dropped) for its first problem
only, so later checks look at clean rows. The value formatting helpers used in every message live here too.
"""
from __future__ import annotations

import difflib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.report import ValidationReport

MAX_EXAMPLES = 5  # ids listed in a message about a set of regions
# Column names people commonly use for the format's columns; difflib catches the rest ('lng' for 'lon', ...).
ALIASES = {
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


class Context:
    """One validation run: its settings, the report being filled and what the checks have learned so far."""

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
        self.meta_unusable = True  # until check_meta finds a usable h3_resolution in city.json

    def error(self, message: str) -> None:
        self.report.errors.append(message)

    def warn(self, message: str) -> None:
        self.report.warnings.append(message)

    def not_checked(self, what: str, because: str) -> None:
        """Note (once, as a warning) a check skipped because a file it depends on is unusable, so that one broken
        file never produces false errors in another."""
        message = f"not checked: {what}: {because}"
        if message not in self.report.warnings:
            self.warn(message)

    def missing_resolution(self) -> str:
        """Why `resolution` is None, for a `not_checked` note."""
        return (f"{schema.CITY_FILE} is invalid (no usable 'h3_resolution'; see its error)" if self.meta_unusable
                else f"{schema.CITY_FILE}'s h3_resolution does not match the regions (see its error)")

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
        value = ", ".join(f"{c}={show(raw[c].iloc[first])}" for c in (*columns, *context))
        where = f"column '{columns[0]}'" if len(columns) == 1 else "columns " + "/".join(f"'{c}'" for c in columns)
        message = (f"{file}: {where}: {n} row(s) {problem} (first at row {first}: {value}); expected {expected}")
        self.ok[table] &= ~mask
        if self.drop and droppable:
            self.warn(f"{message} -> dropped {n} row(s)")
            key = (file, reason)
            self.report.dropped[key] = self.report.dropped.get(key, 0) + n
        else:
            self.error(message)


def is_text(series: pd.Series) -> bool:
    """Whether `series` holds strings (a string dtype, or object values that are all strings or missing)."""
    if isinstance(series.dtype, pd.StringDtype):
        return True
    return series.dtype == object and pd.api.types.infer_dtype(series, skipna=True) in ("string", "empty")


def show(value: Any) -> str:
    """A cell value as a message quotes it: NaN, empty, 10 significant digits or a repr cut at 120 characters."""
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    if value is None or value is pd.NA or value is pd.NaT:
        return "empty"
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, float):
        return format(value, ".10g")
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."


def short(err: Exception) -> str:
    """The first line of an exception's message (its type if it has none), cut at 200 characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return text if len(text) <= 200 else text[:197] + "..."


def closest(wanted: str, candidates: list[str], all_columns: list[str] | None = None) -> str:
    """' (found 'lng'; rename it to 'lon')' for the closest candidate name, or the names found."""
    lowered = {c.lower(): c for c in candidates}
    match = next((lowered[a] for a in ALIASES.get(wanted, ()) if a in lowered), None)
    if match is None:
        close = difflib.get_close_matches(wanted.lower(), list(lowered), n=1, cutoff=0.6)
        match = lowered[close[0]] if close else None
    if match is not None:
        return f" (found '{match}'; rename it to '{wanted}')"
    if all_columns is not None:
        return f" (found columns {all_columns})"
    return ""
