"""Checks of the caption tables, `captions.parquet` and `scene_facts.parquet` (both optional): non-empty text, a
modality of `musecl.contract.MODALITIES`, an `image_id` that is in the image table of that modality, rates in
[0, 1], fact lists that `musecl.data.captions.facts_from_text` reads.

A bad row concerns only itself (a caption of an unknown image, an empty caption), so with ``bad_rows="drop"`` it is
dropped and counted; with ``drop`` the captions of images dropped from their image table are dropped too.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.contract import IMAGE_TABLES, MODALITIES, MODALITY_NAMES
from musecl.data import schema
from musecl.data.captions import facts_from_text
from musecl.data.validate.context import MAX_EXAMPLES, Context, show

TEXT_COLUMNS = {"captions": ("image_id", "modality", "captioner", "caption"),
                "scene_facts": ("image_id", "modality", "facts")}
RATE_COLUMNS = ("hallucination_rate", "omission_rate")


def check_captions(ctx: Context) -> None:
    """captions.parquet and scene_facts.parquet, each when present and usable."""
    for name in TEXT_COLUMNS:
        if name in ctx.usable:
            check_caption_table(ctx, name)


def check_caption_table(ctx: Context, name: str) -> None:
    frame = ctx.frames[name]
    for col in TEXT_COLUMNS[name]:
        text = frame[col].astype("string")
        empty = (text.isna() | (text.str.strip() == "")).to_numpy(dtype=bool)
        ctx.rows(name, empty, "are empty", f"a non-empty {col} in every row", [col], reason=f"empty {col}")
    modality = frame["modality"].astype("string")
    expected = " or ".join(f"'{m}' ({IMAGE_TABLES[m]}, {MODALITY_NAMES[m]})" for m in MODALITIES)
    ctx.rows(name, ~modality.isin(MODALITIES).to_numpy(dtype=bool), "have an unknown modality", expected,
             ["modality"], reason="unknown modality")
    check_image_ids(ctx, name, modality)
    if name == "captions":
        for col in RATE_COLUMNS:
            if col in frame.columns:
                values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
                ctx.rows(name, ~np.isnan(values) & ~((values >= 0) & (values <= 1)), "are outside [0, 1]",
                         "a share in [0, 1] (or empty where the caption states no fact)", [col], context=["image_id"],
                         reason=f"{col} outside [0, 1]")
    else:
        unreadable = np.zeros(len(frame), dtype=bool)
        for i in np.flatnonzero(ctx.ok[name]):
            try:
                facts_from_text(frame["facts"].iloc[i])
            except ValueError:
                unreadable[i] = True
        ctx.rows(name, unreadable, "are not fact lists", "facts as musecl.data.captions.facts_to_text writes them "
                 "('kind|subject|value' joined by ';')", ["facts"], context=["image_id"], reason="unreadable facts")


def check_image_ids(ctx: Context, name: str, modality: pd.Series) -> None:
    """Every row's image_id is in the image table of its modality (after dropping, with bad_rows="drop")."""
    image_id = ctx.frames[name]["image_id"].astype("string")
    for m in MODALITIES:
        table = IMAGE_TABLES[m]
        if table not in ctx.usable:  # that table's own problem is reported already
            continue
        ids = ctx.frames[table]["image_id"].astype("string")
        known = ids[ctx.ok[table]] if ctx.drop else ids
        unknown = ((modality == m) & ~image_id.isin(known.dropna())).fillna(False).to_numpy(dtype=bool)
        unknown &= ctx.ok[name]
        if not unknown.any():
            continue
        file = schema.TABLES[table].file
        examples = ", ".join(show(v) for v in pd.unique(image_id[unknown])[:MAX_EXAMPLES])
        dropped = " (or dropped from it)" if ctx.drop else ""
        ctx.rows(name, unknown, f"refer to an image not in {file}{dropped}: {examples}",
                 f"an image_id of {file} for modality '{m}'", ["image_id"], context=["modality"],
                 reason="unknown image_id")
