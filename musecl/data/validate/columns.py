"""Reading the bundle's tables and the checks every table gets from its schema: columns present, types usable
(text columns hold strings, numeric and datetime columns are converted from text where possible), ids non-empty and
unique.

`read_tables` fills `ctx.raw`/`ctx.frames`/`ctx.ok` and marks a table usable (`ctx.usable`) when its required
columns are present with usable types; only usable tables get the per-table checks of the other modules.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.context import MAX_EXAMPLES, Context, closest, is_text, short, show

# Text columns that must hold a value in every row (name, text may be empty; category/path have their own checks).
KEY_COLUMNS = {"regions": (REGION_ID,), "pois": ("poi_id",), "trips": ("trip_id",), "trajectories": ("vehicle_id",),
               "remote_sensing": ("image_id",), "street_view": ("image_id",), "indicators": (REGION_ID,),
               "latents": (REGION_ID,)}


def read_tables(ctx: Context) -> None:
    """Read every table of the schema that is present (report the required ones that are not) and check its columns."""
    present = {name: (ctx.root / spec.file).is_file() for name, spec in schema.TABLES.items()}
    check_modalities(ctx, present)
    for name, spec in schema.TABLES.items():
        if not present[name]:
            if spec.required:
                ctx.error(f"{spec.file}: missing (expected the {name.replace('_', '-')} table with columns "
                          f"{spec.required_columns})")
            continue
        try:
            frame = pd.read_parquet(ctx.root / spec.file)
        except Exception as err:  # pyarrow raises many kinds
            ctx.error(f"{spec.file}: cannot read as parquet ({short(err)})")
            continue
        frame = frame.reset_index(drop=True)
        ctx.report.rows[spec.file] = len(frame)
        ctx.raw[name] = frame
        ctx.frames[name] = frame.copy()
        ctx.ok[name] = np.ones(len(frame), dtype=bool)
        if check_columns(ctx, name):
            ctx.usable.add(name)
    mobility = [schema.TABLES[n].file for n in ("trips", "trajectories") if n in ctx.raw]
    if mobility and all(ctx.report.rows[f] == 0 for f in mobility):
        ctx.error(f"{' and '.join(mobility)}: no rows; expected some mobility data (trips or GPS points)")


def check_modalities(ctx: Context, present: dict[str, bool]) -> None:
    """A city has any non-empty combination of the four modalities (`schema.MODALITIES`): none is an error; a partial
    set is a warning that names the modalities present and what the pipeline does without the others."""
    have = [m for m, tables in schema.MODALITIES.items() if any(present[t] for t in tables)]
    if not have:
        ctx.error("no modality: " + ", ".join(schema.modality_files(m) for m in schema.MODALITIES)
                  + " are all missing; expected at least one of the modalities remote sensing, street view, POIs, "
                  "mobility (docs/data_format.md, 'Modalities')")
    elif len(have) < len(schema.MODALITIES):
        missing = [m for m in schema.MODALITIES if m not in have]
        fallback = ("; image positives chosen by a missing similarity source fall back to geographic neighbours "
                    "(pairs.fallback_rule)") if {"poi", "mobility"} & set(missing) else ""
        ctx.warn(f"modalities: the city has {', '.join(have)}; missing "
                 + ", ".join(f"{m} ({schema.modality_files(m)})" for m in missing)
                 + f": the stages that need them are skipped{fallback} (docs/data_format.md, 'Modalities')")


def check_columns(ctx: Context, name: str) -> bool:
    """Presence and types of the table's schema columns; converts numeric/datetime columns in `frames`."""
    spec = schema.TABLES[name]
    frame = ctx.frames[name]
    columns = [str(c) for c in frame.columns]
    expected = [c.name for c in spec.columns]
    usable = True
    for col in spec.required_columns:
        if col not in columns:
            extra = [c for c in columns if c not in expected]
            ctx.error(f"{spec.file}: missing column '{col}'{closest(col, extra, columns)} "
                      f"(expected columns {spec.required_columns})")
            usable = False
    if not usable:
        return False
    for col in spec.columns:
        if col.name not in columns or col.kind == "geometry":
            continue
        if col.kind == "str":
            usable &= check_text(ctx, name, col)
        elif col.kind in ("float", "int"):
            usable &= check_numeric(ctx, name, col)
        elif col.kind == "datetime":
            usable &= check_datetime(ctx, name, col)
    if len(frame) == 0 and name not in ("trips", "trajectories"):
        ctx.error(f"{spec.file}: has no rows; expected at least one")
    if name in ("indicators", "latents"):
        usable &= check_value_columns(ctx, name)
    for key in spec.unique:
        if key in columns:
            check_unique(ctx, name, key)
    return usable


def check_text(ctx: Context, name: str, col: schema.Column) -> bool:
    """A text column holds strings; an id column (KEY_COLUMNS) holds a non-empty one in every row."""
    spec = schema.TABLES[name]
    series = ctx.frames[name][col.name]
    if not is_text(series):
        found = pd.api.types.infer_dtype(series, skipna=True)
        ctx.error(f"{spec.file}: column '{col.name}' holds {found} values (dtype {series.dtype}); expected strings "
                  f"({col.description}); convert it with .astype(str)")
        return False
    if col.name in KEY_COLUMNS.get(name, ()):
        missing = (series.isna() | (series.astype("string").str.strip() == "")).to_numpy(dtype=bool)
        ctx.rows(name, missing, "are empty", f"a non-empty id in every row ({col.description})",
                 [col.name], reason="missing id", droppable=False)
    return True


def check_numeric(ctx: Context, name: str, col: schema.Column) -> bool:
    """A float/int column holds numbers; text is an error, or with bad_rows="drop" converted (bad values dropped)."""
    spec = schema.TABLES[name]
    series = ctx.frames[name][col.name]
    if pd.api.types.is_bool_dtype(series) or not (
        pd.api.types.is_numeric_dtype(series) or is_text(series) or series.dtype == object
    ):
        ctx.error(f"{spec.file}: column '{col.name}' has dtype {series.dtype}; expected {col.kind} numbers "
                  f"({col.description})")
        return False
    values = pd.to_numeric(series, errors="coerce").astype("float64")
    if not pd.api.types.is_numeric_dtype(series):
        non_numeric = (values.isna() & series.notna()).to_numpy()
        is_coordinate = col.name in ("lon", "lat") or col.name.endswith(("_lon", "_lat"))
        if not ctx.drop or name == "regions":  # regions are never rewritten, so never converted
            bad = int(non_numeric.sum())
            detail = ""
            if bad:
                first = int(np.flatnonzero(non_numeric)[0])
                detail = f"; {bad} value(s) are not numbers (first at row {first}: {show(series.iloc[first])})"
            ctx.error(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}){detail}; expected "
                      f"{col.kind} numbers ({col.description})")
            ctx.ok[name] &= ~non_numeric
        else:
            ctx.warn(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}); converted to numbers")
            ctx.converted[name].append(col.name)
            reason = "non-numeric coordinates" if is_coordinate else f"non-numeric {col.name}"
            ctx.rows(name, non_numeric, "are not numbers", f"{col.kind} numbers ({col.description})",
                     [col.name], reason=reason, droppable=name != "regions")
    ctx.frames[name][col.name] = values
    if col.kind == "int":
        arr = values.to_numpy()
        bad = ~(np.isfinite(arr) & (arr >= 0) & (arr == np.round(arr)))
        ctx.rows(name, bad, "are not non-negative integers", f"non-negative integer counts ({col.description})",
                 [col.name], reason=f"bad {col.name}", droppable=False)
    return True


def check_datetime(ctx: Context, name: str, col: schema.Column) -> bool:
    """A datetime column holds timestamps; text is an error, or with bad_rows="drop" parsed (unparseable dropped)."""
    spec = schema.TABLES[name]
    series = ctx.frames[name][col.name]
    if pd.api.types.is_datetime64_any_dtype(series):
        values = series
    elif is_text(series) or series.dtype == object:
        try:
            values = pd.to_datetime(series, errors="coerce", format="ISO8601")
        except (ValueError, TypeError) as err:  # e.g. mixed time zones
            ctx.error(f"{spec.file}: column '{col.name}' holds text that cannot be read as one timestamp column "
                      f"({short(err)}); expected ISO 8601 timestamps with one time zone (or none)")
            return False
        unparseable = (values.isna() & series.notna()).to_numpy()
        if not ctx.drop:
            n = int(unparseable.sum())
            detail = ""
            if n:
                first = int(np.flatnonzero(unparseable)[0])
                detail = f"; {n} value(s) cannot be parsed as times (first at row {first}: {show(series.iloc[first])})"
            ctx.error(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}){detail}; expected "
                      "timestamps (a parquet timestamp column: pd.to_datetime(...) before writing)")
            ctx.ok[name] &= ~unparseable
        else:
            ctx.warn(f"{spec.file}: column '{col.name}' holds text (dtype {series.dtype}); converted to timestamps")
            ctx.converted[name].append(col.name)
            ctx.rows(name, unparseable, "cannot be parsed as times",
                     "ISO 8601 timestamps such as '2024-03-04T08:15:00'", [col.name], reason="unparseable time")
    else:
        ctx.error(f"{spec.file}: column '{col.name}' has dtype {series.dtype}; expected timestamps "
                  f"({col.description})")
        return False
    ctx.frames[name][col.name] = values
    if col.required:
        ctx.rows(name, values.isna().to_numpy(), "are missing (NaT)", f"a timestamp in every row ({col.description})",
                 [col.name], reason=f"missing {col.name}")
    return True


def check_value_columns(ctx: Context, name: str) -> bool:
    """indicators/latents: every column besides region_id is a float column."""
    spec = schema.TABLES[name]
    frame = ctx.frames[name]
    usable = True
    for col in frame.columns:
        if col == REGION_ID:
            continue
        series = frame[col]
        if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
            ctx.error(f"{spec.file}: column '{col}' has dtype {series.dtype}; expected float numbers "
                      f"(one numeric column per {'indicator' if name == 'indicators' else 'latent variable'})")
            usable = False
    return usable


def check_unique(ctx: Context, name: str, key: str) -> None:
    """The values of the id column `key` are unique (structural: an error, never dropped)."""
    spec = schema.TABLES[name]
    series = ctx.raw[name][key]
    dup = series.duplicated(keep=False) & series.notna()
    if dup.any():
        first_value = series[dup].iloc[0]
        where = np.flatnonzero((series == first_value).to_numpy(dtype=bool))
        n_values = int(series[dup].nunique())
        ctx.error(f"{spec.file}: column '{key}': {n_values} value(s) occur more than once, in {int(dup.sum())} rows "
                  f"(first {show(first_value)} at rows {', '.join(map(str, where[:MAX_EXAMPLES]))}); "
                  f"expected unique ids")
