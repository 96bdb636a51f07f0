"""`validate_bundle`: one validation run, its checks in their fixed order, and the cleaned tables it hands back.

The order matters: city.json and the boundary come first, then every table is read and its columns checked, then
regions (whose ids the rest use), POIs, mobility, images, indicators, latents, captions and finally coverage. A row is
reported for its first problem only, so the order decides which message a bad row gets.
"""
from __future__ import annotations

from pathlib import Path

from musecl.data import schema
from musecl.data.validate.captions import check_captions
from musecl.data.validate.columns import read_tables
from musecl.data.validate.context import Context
from musecl.data.validate.coverage import check_coverage
from musecl.data.validate.images import check_images_tables
from musecl.data.validate.losses import check_losses
from musecl.data.validate.meta import check_boundary, check_meta
from musecl.data.validate.points import check_mobility, check_pois
from musecl.data.validate.regions import check_regions, normalise_region_ids
from musecl.data.validate.report import ValidationReport
from musecl.data.validate.values import check_indicators, check_latents

BAD_ROWS = ("error", "drop")
MIN_IMAGE_SIDE = 8  # pixels; anything smaller is a placeholder or a broken download (the generator's minimum is 8)


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
    report = run_checks(Context(Path(root), bad_rows, check_images, progress, min_image_side))
    if raise_on_error:
        report.raise_if_errors()
    return report


def run_checks(ctx: Context) -> ValidationReport:
    """Every check, in order, on one context; returns its report."""
    if not ctx.root.is_dir():
        ctx.error(f"{ctx.root}: not a folder (expected the city bundle folder holding {schema.CITY_FILE}, "
                  f"{schema.BOUNDARY_FILE} and the tables of docs/data_format.md)")
        return ctx.report
    check_meta(ctx)
    check_boundary(ctx)
    read_tables(ctx)
    normalise_region_ids(ctx)
    check_regions(ctx)
    check_pois(ctx)
    check_mobility(ctx)
    check_images_tables(ctx)
    check_indicators(ctx)
    check_latents(ctx)
    check_captions(ctx)
    check_coverage(ctx)
    check_losses(ctx)
    collect_cleaned(ctx)
    return ctx.report


def collect_cleaned(ctx: Context) -> None:
    """The tables to write when rows were dropped (drop mode) or columns converted (region ids in both modes)."""
    for name, frame in ctx.frames.items():
        if name not in ctx.converted and (not ctx.drop or name == "regions" or ctx.ok[name].all()):
            continue  # regions are never dropped (only their ids normalised); unchanged tables are copied as they are
        table = ctx.raw[name].copy()
        for col in ctx.converted.get(name, ()):
            table[col] = frame[col]
        ctx.report.tables[name] = table[ctx.ok[name]].reset_index(drop=True)
