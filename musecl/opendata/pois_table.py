"""POIs from a table (CSV or Parquet) whose columns the city config names: how Baidu/AMap/Foursquare exports come.

The category may be one 'level1;level2' column (Baidu's '美食;中餐厅'; deeper levels are cut to two), two columns, or
any column plus a mapping CSV (`source,level1,level2`, e.g. Foursquare category names to the taxonomy). Exports with one
row per review (as MuseCL's Baidu data was, per the authors' counting code) are folded into one POI per
`group_rows_by` key: the reviews are joined into the POI text and counted as `n_comments`.
"""
from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

from musecl.opendata.config import TablePoisConfig
from musecl.opendata.points import (
    RegionAssigner,
    coordinates_wgs84,
    is_parquet,
    require_columns,
    table_columns,
    valid_coordinates,
)
from musecl.opendata.report import BAD_COORDINATES, DUPLICATE, OUTSIDE, BuildError, ReaderReport

MISSING_CATEGORY = "missing category"
UNMAPPED_CATEGORY = "category not in category_map"
REVIEW_SEPARATOR = " | "


def _read(config: TablePoisConfig) -> pd.DataFrame:
    names = [config.lon, config.lat, config.category, config.category2, config.name, config.text,
             config.n_comments, config.poi_id, *config.group_rows_by]
    columns = list(dict.fromkeys(c for c in names if c))
    require_columns(config.file, columns, table_columns(config.file, config.separator), "pois.table.columns")
    try:
        if is_parquet(config.file):
            return pd.read_parquet(config.file, columns=columns)
        text_like = [c for c in columns if c not in (config.lon, config.lat, config.n_comments)]
        return pd.read_csv(config.file, sep=config.separator, usecols=columns, dtype={c: "str" for c in text_like},
                           keep_default_na=False, na_values=[""])
    except Exception as err:
        raise BuildError(f"{config.file}: cannot read the POI table ({err})") from err


def _categories(frame: pd.DataFrame, config: TablePoisConfig, report: ReaderReport) -> pd.Series:
    """'level1;level2' per row, or NA where the row has no usable category."""
    raw = frame[config.category].astype("str").str.strip()
    raw = raw.where(frame[config.category].notna() & (raw != ""))
    if config.category_map is not None:
        table = pd.read_csv(config.category_map, dtype="str", keep_default_na=False, comment="#")
        if list(table.columns) != ["source", "level1", "level2"]:
            raise BuildError(f"{config.category_map}: expected columns ['source', 'level1', 'level2'], "
                             f"got {list(table.columns)}")
        lookup = dict(zip(table["source"].str.strip(), table["level1"].str.strip() + ";" + table["level2"].str.strip()))
        mapped = raw.map(lookup)
        missing = raw.notna() & mapped.isna()
        if missing.any():
            top = Counter(raw[missing]).most_common(10)
            report.note("most frequent categories missing from category_map (dropped): "
                        + ", ".join(f"{c} ({n})" for c, n in top))
        report.drop(UNMAPPED_CATEGORY, int(missing.sum()))
        return mapped
    if config.category2 is not None:
        level2 = frame[config.category2].astype("str").str.strip().str.replace(";", ",")
        level2 = level2.where(frame[config.category2].notna() & (level2 != ""), "other")
        return raw.str.replace(";", ",") + ";" + level2
    parts = raw.str.split(";", n=2, expand=False)
    level1 = parts.str[0].str.strip()
    level2 = parts.str[1].str.strip().fillna("other").replace("", "other")
    return (level1 + ";" + level2).where(raw.notna())


def read_table_pois(config: TablePoisConfig, assigner: RegionAssigner) -> tuple[pd.DataFrame, ReaderReport]:
    """POIs of the table inside the city's regions, in the bundle's columns (poi_id, lon, lat, category, name, text
    and n_comments where the table has comments)."""
    report = ReaderReport("pois (table)", str(config.file))
    frame = _read(config)
    report.read = len(frame)
    with_comments = config.n_comments is not None or bool(config.group_rows_by and config.text)
    if config.group_rows_by:
        frame = _fold_reviews(frame, config)
        report.note(f"{report.read:,} rows folded into {len(frame):,} POIs by {list(config.group_rows_by)}")
    category = _categories(frame, config, report)
    has_category = category.notna().to_numpy()
    report.drop(MISSING_CATEGORY, int((~has_category).sum()) - report.dropped.get(UNMAPPED_CATEGORY, 0))
    lon, lat = coordinates_wgs84(frame, config.lon, config.lat, config.crs)
    _note_crs(report, config.crs, len(frame))
    valid = valid_coordinates(lon, lat)
    report.drop(BAD_COORDINATES, int((has_category & ~valid).sum()))
    region = assigner.assign_valid(lon, lat, has_category & valid)
    outside = has_category & valid & (region == -1)
    report.drop(OUTSIDE, int(outside.sum()))
    report.test_swap(assigner, lon, lat, has_category & (region < 0))
    keep = region >= 0
    if config.poi_id:
        poi_id = frame[config.poi_id].astype("str").to_numpy(dtype=object)
    else:
        poi_id = np.array([f"t{i}" for i in range(len(frame))], dtype=object)
    out = pd.DataFrame({
        "poi_id": poi_id,
        "lon": lon,
        "lat": lat,
        "category": category.to_numpy(dtype=object),
        "name": _text_column(frame, config.name),
        "text": _text_column(frame, config.text if not config.group_rows_by else "_text"),
    })
    if with_comments:
        source = config.n_comments or "_n_comments"
        out["n_comments"] = pd.to_numeric(frame[source], errors="coerce").fillna(0).astype("int64").to_numpy()
    out = out[keep]
    dup = out["poi_id"].duplicated()
    report.drop(DUPLICATE, int(dup.sum()))
    out = out[~dup].reset_index(drop=True)
    report.kept = len(out)
    report.check_outside_share()
    return out, report


def _note_crs(report: ReaderReport, crs: str | None, n: int) -> None:
    from musecl.opendata.crs import crs_note

    note = crs_note(crs, n)
    if note:
        report.note(note)


def _text_column(frame: pd.DataFrame, column: str | None) -> np.ndarray:
    if column is None or column not in frame.columns:
        return np.full(len(frame), "", dtype=object)
    return frame[column].astype("str").fillna("").to_numpy(dtype=object)


def _fold_reviews(frame: pd.DataFrame, config: TablePoisConfig) -> pd.DataFrame:
    """One row per POI: the first row of each group, its reviews joined into `_text` and counted in `_n_comments`."""
    keys = list(config.group_rows_by)
    grouped = frame.groupby(keys, sort=False, dropna=False)
    first = grouped.head(1).reset_index(drop=True)
    if config.text:
        text = frame[config.text].astype("str").str.strip()
        text = text.where(frame[config.text].notna() & (text != ""))
        joined = text.groupby([frame[k] for k in keys], sort=False, dropna=False).agg(
            lambda s: REVIEW_SEPARATOR.join(s.dropna()))
        counts = text.notna().groupby([frame[k] for k in keys], sort=False, dropna=False).sum()
        first["_text"] = joined.to_numpy()
        first["_n_comments"] = counts.to_numpy()
    else:
        first["_text"] = ""
        first["_n_comments"] = 0
    return first
