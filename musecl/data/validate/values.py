"""Checks of the per-region value tables, `indicators.parquet` and `latents.parquet`: one row per region of
`regions.parquet`, finite values, indicator columns that match the ones `city.json` declares (and are non-negative
when their transform is log1p).

Problems here are structural: a region's indicators cannot be dropped without dropping the region, so they are
errors in both `bad_rows` modes.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.data import schema
from musecl.data.validate.context import MAX_EXAMPLES, Context, closest


def check_indicators(ctx: Context) -> None:
    """indicators.parquet: region keys, the declared indicator columns, finite values, log1p indicators >= 0."""
    name, file = "indicators", schema.INDICATORS_FILE
    if name not in ctx.usable:
        return
    frame = ctx.frames[name]
    check_region_keys(ctx, name)
    present = [c for c in frame.columns if c != REGION_ID]
    if not isinstance(ctx.meta.get("indicators"), dict):  # city.json's problem is reported already
        check_finite(ctx, name, present, "indicator")
        return
    declared = ctx.meta["indicators"]
    for ind in declared:
        if ind not in present:
            ctx.error(f"{file}: missing column '{ind}' declared in {schema.CITY_FILE} indicators"
                      f"{closest(ind, [p for p in present if p not in declared])}; expected one column per "
                      "declared indicator")
    for col in present:
        if col not in declared:
            ctx.error(f"{file}: column '{col}' is not declared in {schema.CITY_FILE} 'indicators'; expected "
                      f"an entry {{\"{col}\": {{\"transform\": \"log1p\" or \"identity\", \"unit\": ..., "
                      "\"description\": ...}}")
    check_finite(ctx, name, present, "indicator")
    for col in present:
        spec = declared.get(col)
        if isinstance(spec, dict) and spec.get("transform") == "log1p":
            values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
            ctx.rows(name, values < 0, "are negative but its transform is log1p",
                     "values >= 0 for a log1p indicator (or declare transform 'identity')", [col], context=[REGION_ID],
                     reason="negative indicator", droppable=False)


def check_latents(ctx: Context) -> None:
    """latents.parquet (synthetic cities): region keys and finite values."""
    if "latents" in ctx.usable:
        check_region_keys(ctx, "latents")
        check_finite(ctx, "latents", [c for c in ctx.frames["latents"].columns if c != REGION_ID], "latent")


def check_region_keys(ctx: Context, name: str) -> None:
    """Every region has a row and every row a known region (structural: never dropped)."""
    if ctx.region_ids is None:
        return
    file = schema.TABLES[name].file
    ids = ctx.frames[name][REGION_ID].astype("string")
    ctx.rows(name, ~ids.isin(ctx.region_ids).to_numpy(dtype=bool), f"refer to a region not in "
             f"{schema.REGIONS_FILE}", f"only the region_ids of {schema.REGIONS_FILE}", [REGION_ID],
             reason="unknown region_id", droppable=False)
    missing = np.setdiff1d(ctx.region_ids, ids.dropna().to_numpy(dtype=object).astype(str))
    if len(missing):
        ctx.error(f"{file}: {len(missing)} of {len(ctx.region_ids)} regions of {schema.REGIONS_FILE} have no row "
                  f"(first: {', '.join(missing[:MAX_EXAMPLES])}); expected one row per region")


def check_finite(ctx: Context, name: str, columns: list[str], what: str) -> None:
    """The numeric `columns` of `name` hold finite values in every row (`what` names a value in the message)."""
    frame = ctx.frames[name]
    for col in columns:
        if not pd.api.types.is_numeric_dtype(frame[col]) or pd.api.types.is_bool_dtype(frame[col]):
            continue
        values = frame[col].to_numpy(dtype=np.float64, na_value=np.nan)
        ctx.rows(name, ~np.isfinite(values), "are NaN or infinite", f"a finite {what} value for every region",
                 [col], context=[REGION_ID], reason=f"non-finite {what}", droppable=False)
