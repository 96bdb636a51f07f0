"""Checking a city bundle before any stage uses it: `validate_bundle`, `import_bundle` and a command line.

    python -m musecl.data.validate PATH [--drop] [--no-images]

Every problem is reported with the file, the column and/or the first offending row (row numbers count from 0, as in
pandas) with its value, the number of rows affected and what was expected; all problems are collected before anything
is raised. With ``bad_rows="drop"`` rows whose problem makes only that row useless (a point outside the city, bad
coordinates, an unreadable image, a malformed POI category, ...) are dropped and counted per file and reason; problems
with the bundle's structure (missing files or columns, duplicate ids, NaN indicators, regions without images, ...)
remain errors. `docs/data_format.md` documents the format and these rules for people.

The package's modules: `report` (the report and its error), `context` (the state a run shares, row reporting, message
helpers), `checker` (`validate_bundle` and the order of the checks), `meta` (city.json, boundary.geojson), `columns`
(reading tables, column presence and types, ids), `regions`, `points` (POIs, trips, trajectories), `images` (image
tables and files), `values` (indicators, latents), `coverage` (regions without images or POIs),
`losses` (with ``drop``, no table emptied quietly) and `cli` (`main`).
This module holds `import_bundle`, which writes a validated bundle's cleaned copy.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.bundle import BundleError
from musecl.data.validate.checker import BAD_ROWS, MIN_IMAGE_SIDE, validate_bundle
from musecl.data.validate.cli import main
from musecl.data.validate.images import IMAGE_FOLDERS
from musecl.data.validate.report import BundleValidationError, ValidationReport

__all__ = [
    "BAD_ROWS",
    "MIN_IMAGE_SIDE",
    "BundleValidationError",
    "ValidationReport",
    "import_bundle",
    "main",
    "validate_bundle",
]


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
    from tqdm import tqdm

    from musecl.storage import atomic_dir

    src, dest = Path(src).resolve(), Path(dest).resolve()
    if dest == src or dest.is_relative_to(src) or src.is_relative_to(dest):
        raise BundleError(f"import_bundle: destination {dest} must be outside the source bundle {src} "
                          "(and not contain it)")
    report = validate_bundle(src, bad_rows=bad_rows, check_images=check_images, progress=progress)
    with atomic_dir(dest) as tmp:
        for file in (schema.CITY_FILE, schema.BOUNDARY_FILE):
            shutil.copy2(src / file, tmp / file)
        images: list[str] = []
        for name, spec in schema.TABLES.items():
            if not (src / spec.file).is_file():
                continue
            if name == "regions" and name in report.tables:  # GeoParquet: keep the geometry and its CRS
                import geopandas as gpd

                regions = gpd.read_parquet(src / spec.file).reset_index(drop=True)
                regions[REGION_ID] = report.tables[name][REGION_ID].to_numpy()  # normalised ids, same rows
                regions.to_parquet(tmp / spec.file, index=False)
            elif name in report.tables:
                report.tables[name].to_parquet(tmp / spec.file, index=False)
            else:
                shutil.copy2(src / spec.file, tmp / spec.file)
            if name in IMAGE_FOLDERS:
                table = report.tables.get(name)
                if table is None:
                    table = pd.read_parquet(src / spec.file, columns=["path"])
                paths = table["path"]
                images += paths.astype(str).tolist()
        for rel in tqdm(sorted(set(images)), desc="copying images", unit="img", disable=not progress):
            _link_or_copy(src / rel, tmp / rel, link_images)
    return report


def _link_or_copy(source: Path, target: Path, link: bool = True) -> None:
    """Hard-link `source` to `target` (copy when `link` is False or the file system cannot link)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    if link:
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not supported
            pass
    shutil.copy2(source, target)
