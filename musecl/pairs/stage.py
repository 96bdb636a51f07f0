"""The `pairs` stage's input and output (notebooks/02_contrastive_pairs.ipynb): from a city bundle and the params.yaml
`pairs` section to the written count and triplet tables, with the stage's summaries and metrics.

It reads the region indicators positives are chosen by (mobility counts, POI category counts), builds each modality's
triplets on its own seeded random stream (`modality_rng`) under its `pairs.modalities.<m>` spec, writes
`mobility.parquet`, `poi_counts.parquet` and `<modality>_{train,val}.parquet`, and reads the triplet tables back for the
encoders. The algorithm itself lives in `musecl.pairs.similarity` and `musecl.pairs.triplets`.
"""
from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.pairs.similarity import poi_category_counts
from musecl.pairs.triplets import TRIPLET_COLUMNS, TripletSet, build_triplets
from musecl.storage import write_parquet

INDICATOR_SOURCES = ("poi", "mobility")
FALLBACK_RULES = ("neighbours", "random")  # pairs.fallback_rule: positives when the similarity source is unusable
ON_DEGENERATE = ("error", "fallback")  # pairs.on_degenerate
SOURCE_FILES = {"poi": "pois.parquet", "mobility": "trips.parquet / trajectories.parquet"}


def region_indicator_tables(bundle, cfg: dict) -> dict[str, pd.DataFrame]:
    """The region descriptions positives are chosen by: `mobility` (inflow, outflow) and `poi` (K category counts),
    each only when the city has that modality (a missing one is absent from the dict: `resolve_spec` falls back)."""
    from musecl.contract import REGION_ID as KEY
    from musecl.mobility import mobility_counts

    tables = {}
    if bundle.has_modality("mobility"):
        tables["mobility"] = mobility_counts(bundle, **dict(cfg.get("mobility", {})))
    if bundle.has_modality("poi"):
        regions = tables["mobility"].index if "mobility" in tables else pd.Index(
            bundle.regions()[KEY].astype(str).to_numpy(dtype=object), name=KEY)
        tables["poi"] = poi_category_counts(bundle.pois(), regions, bundle.h3_resolution,
                                            level=int(cfg.get("poi_level", 1)))
    return tables


def resolve_spec(spec: dict, tables: dict[str, pd.DataFrame], cfg: dict, where: str) -> tuple[dict, str]:
    """The spec to build triplets with, and why it differs from `spec` ('' when it does not).

    A similarity rule whose indicator source is missing (a city without POIs or mobility) falls back to
    `pairs.fallback_rule` (default `neighbours`: H3 neighbours, Tile2Vec's rule) with a warning. A degenerate source
    (`degenerate_cause`: every similarity equal) is an error naming the cause, or with `pairs.on_degenerate: fallback`
    the same fallback with a warning.
    """
    import warnings

    from musecl.pairs.similarity import degenerate_cause

    rule, source = spec.get("rule", "similarity"), spec.get("indicator", "poi")
    if rule not in ("similarity", "similarity+neighbours"):
        return spec, ""
    if source not in INDICATOR_SOURCES:
        raise ValueError(f"{where}.indicator must be one of {INDICATOR_SOURCES}, got {source!r}")
    fallback = cfg.get("fallback_rule", "neighbours")
    if fallback not in FALLBACK_RULES:
        raise ValueError(f"pairs.fallback_rule must be one of {FALLBACK_RULES}, got {fallback!r}")
    if source not in tables:
        cause = f"the city has no {source} data ({SOURCE_FILES[source]} absent)"
    else:
        cause = degenerate_cause(tables[source].to_numpy(), cfg["similarity"][source], source)
        if cause is None:
            return spec, ""
        on_degenerate = cfg.get("on_degenerate", "error")
        if on_degenerate not in ON_DEGENERATE:
            raise ValueError(f"pairs.on_degenerate must be one of {ON_DEGENERATE}, got {on_degenerate!r}")
        cause = f"λ^{source.upper() if source == 'poi' else 'PM'} is degenerate: {cause}"
        if on_degenerate == "error":
            raise ValueError(f"{where}: {cause}. Positives chosen by it would be arbitrary; fix the {source} data, or "
                             f"set pairs.on_degenerate: fallback to use pairs.fallback_rule ({fallback}) instead")
    note = f"{cause}: positives by rule '{fallback}' instead of '{rule}' (pairs.fallback_rule)"
    warnings.warn(f"{where}: {note}", stacklevel=2)
    return {**spec, "rule": fallback, "indicator": None}, note


def modality_rng(seed: int, modality: str) -> np.random.Generator:
    """The random stream of one modality (or baseline run) `modality`: seeded by (seed, crc32 of the name), so adding or
    changing one modality leaves the others' draws as they were."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(modality.encode())]))


def modality_triplets(bundle, tables: dict[str, pd.DataFrame], cfg: dict, seed: int) -> dict[str, TripletSet]:
    """Train/val triplets for each modality of `cfg["modalities"]` (rs, sv) under its rule and indicator source.

    Each modality draws from its own seeded stream, so adding or changing one modality leaves the other's triplets as
    they were. Modalities the city has no images of are left out (`skipped_modalities` says why).
    """
    return {
        modality: triplets_from_spec(bundle_images(bundle, modality), tables, spec, cfg, modality_rng(seed, modality),
                                     f"pairs.modalities.{modality}")
        for modality, spec in cfg["modalities"].items() if bundle.has_modality(modality)
    }


def bundle_images(bundle, modality: str) -> pd.DataFrame:
    """The modality's image table (`musecl.encoders.image_cache.image_table`) carrying the bundle's region ids in
    `attrs["regions"]` (the regions triplets are built over when no indicator table gives them)."""
    from musecl.encoders.image_cache import image_table

    images = image_table(bundle, modality)
    images.attrs["regions"] = bundle.regions()[REGION_ID].astype(str).to_numpy(dtype=object)
    return images


def skipped_modalities(bundle, cfg: dict) -> dict[str, str]:
    """The image modalities of `pairs.modalities` the city has no images of, with the reason (no triplets)."""
    from musecl.data.schema import MODALITY_NAMES, modality_files

    return {m: f"the city has no {MODALITY_NAMES[m]} ({modality_files(m)} absent)"
            for m in cfg["modalities"] if not bundle.has_modality(m)}


def pairs_plan(sets: dict[str, TripletSet], skipped: dict[str, str], cfg: dict) -> pd.DataFrame:
    """One row per modality: the configured positive rule, the rule used and why they differ (or why the modality
    has no triplets): what the notebook shows and `reports/02_contrastive_pairs/pairs_plan.md` keeps."""
    rows = {}
    for modality, spec in cfg["modalities"].items():
        asked = f"{spec.get('rule', 'similarity')} ({spec.get('indicator', 'poi')})"
        if modality in skipped:
            rows[modality] = {"configured": asked, "used": "skipped: no triplets", "why": skipped[modality]}
        else:
            ts = sets[modality]
            rows[modality] = {"configured": asked, "used": asked if not ts.note else ts.rule, "why": ts.note or "-"}
    return pd.DataFrame(rows).T.rename_axis("modality")


def triplets_from_spec(images: pd.DataFrame, tables: dict[str, pd.DataFrame], spec: dict, cfg: dict,
                       rng: np.random.Generator, where: str) -> TripletSet:
    """Triplets of one image table under a `pairs.modalities.<m>`-shaped spec (indicator, rule, top_k, rings, sizes);
    `cfg` is the whole `pairs` section (similarity metrics, val_fraction), `where` names the spec in errors."""
    spec, note = resolve_spec(spec, tables, cfg, where)
    source = spec.get("indicator", "poi")
    if source is not None and source not in INDICATOR_SOURCES:
        raise ValueError(f"{where}.indicator must be one of {INDICATOR_SOURCES}, got {source!r}")
    usable = source in tables
    region_ids = tables[source].index if usable else region_index(images, tables)
    ts = build_triplets(
        images,
        region_ids,
        rng,
        rule=spec.get("rule", "similarity"),
        features=tables[source].to_numpy() if usable else None,
        metric=cfg["similarity"][source] if usable else "cosine",
        top_k=int(spec.get("top_k", 1)),
        neighbour_ring=int(spec.get("neighbour_ring", 1)),
        negative_min_ring=int(spec.get("negative_min_ring", 0)),
        n_train=int(spec["n_train"]),
        n_val=int(spec["n_val"]),
        val_fraction=float(cfg.get("val_fraction", 0.2)),
    )
    ts.rule, ts.note = spec.get("rule", "similarity"), note
    return ts


def region_index(images: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.Index:
    """The regions to build triplets over when the spec's source is not used: those of any indicator table, else the
    regions the images lie in (`images.attrs["regions"]` when the image table carries the bundle's regions)."""
    if tables:
        return next(iter(tables.values())).index
    regions = images.attrs.get("regions")
    if regions is None:
        regions = sorted(images[REGION_ID].dropna().astype(str).unique())
    return pd.Index(np.asarray(regions, dtype=object), name=REGION_ID)


# ---- summaries ------------------------------------------------------------------------------------------------------
def poi_summary(poi: pd.DataFrame) -> pd.DataFrame:
    """City-wide POI count of each category and the share of regions with at least one POI of it (rows: `POIs`,
    `regions with one`)."""
    return pd.DataFrame({"POIs": poi.sum(), "regions with one": (poi > 0).mean().round(3)}).T


def similarity_summary(similarities: dict[str, np.ndarray], metrics: dict[str, str]) -> pd.DataFrame:
    """One row per similarity (mobility = λ^PM, poi = λ^POI): its metric, the number of regions and the median over
    region pairs."""
    return pd.DataFrame({name: {"metric": metrics[name], "regions": sim.shape[0],
                                "median over pairs": np.median(sim[np.triu_indices(len(sim), 1)])}
                         for name, sim in similarities.items()}).T


def triplet_summary(sets: dict[str, TripletSet], cfg: dict) -> pd.DataFrame:
    """One row per modality: how the triplets were made and how varied they are."""
    rows = {}
    for modality, ts in sets.items():
        spec = cfg["modalities"][modality]
        images = ts.images
        rows[modality] = {
            "indicator": spec.get("indicator"),
            "rule": spec.get("rule", "similarity"),
            "top_k": spec.get("top_k", 1),
            "images": len(images) if images is not None else np.nan,
            "regions with images": images[REGION_ID].nunique() if images is not None else np.nan,
            "images outside regions": images.attrs.get("outside_regions", 0) if images is not None else np.nan,
            "train anchors": len(ts.anchors_train),
            "val anchors": len(ts.anchors_val),
            "train triplets": len(ts.train),
            "val triplets": len(ts.val),
            "distinct train (anchor, positive) regions":
                len(ts.train[["anchor_region", "positive_region"]].drop_duplicates()),
            "distinct train anchor images": ts.train["anchor_image"].nunique(),
        }
        if ts.note:  # a fallback (resolve_spec): the columns appear only then, so a full city's table is unchanged
            rows[modality].update({"rule used": ts.rule, "why": ts.note})
    return pd.DataFrame(rows).T


def pair_metrics(check_summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The stage's DVC metrics (reports/pairs.json) from the summary of `pair_checks`: per modality, the share of
    triplets whose positive is closer on the indicators, and the mean λ of positive and of random pairs."""
    def number(value) -> float | None:  # None (JSON null) for the λ of a modality whose positives fell back
        return None if pd.isna(value) else float(value)

    return {m: {"positive_closer_share_indicators": number(row["indicators: P(positive closer)"]),
                "mean_similarity_positive": number(row["mean λ positive"]),
                "mean_similarity_random": number(row["mean λ random"])}
            for m, row in check_summary.iterrows()}


EXAMPLE_TITLES = {"rs": "remote sensing (positive: most similar POI mix)",
                  "sv": "street view (positive: most similar mobility)"}


def example_title(modality: str, ts: TripletSet) -> str:
    """The title of a modality's triplet examples: its default positive source, or the fallback rule used."""
    if ts.note:
        return f"{'remote sensing' if modality == 'rs' else 'street view'} (positive: rule '{ts.rule}', a fallback)"
    return EXAMPLE_TITLES.get(modality, modality)


# ---- files ----------------------------------------------------------------------------------------------------------
def write_pairs(out_dir, tables: dict[str, pd.DataFrame], sets: dict[str, TripletSet],
                skipped: dict[str, str] | None = None) -> list:
    """Write the counts (`mobility.parquet`, `poi_counts.parquet`, each when the city has its modality) and
    `<modality>_{train,val}.parquet` atomically. A modality of `skipped` (no images) gets empty triplet tables with
    the reason in their metadata, so the encoders stage finds its declared inputs and skips with that reason."""
    out_dir = Path(out_dir)
    written = []
    for modality, reason in (skipped or {}).items():
        for split in ("train", "val"):
            path = out_dir / f"{modality}_{split}.parquet"
            write_skipped_triplets(path, reason)
            written.append(path)
    for name, table in (("mobility", tables.get("mobility")), ("poi_counts", tables.get("poi"))):
        if table is None:
            continue
        path = out_dir / f"{name}.parquet"
        frame = table.reset_index()
        frame.columns = [str(c) for c in frame.columns]
        write_parquet(frame, path)
        written.append(path)
    for modality, ts in sets.items():
        for split, table in (("train", ts.train), ("val", ts.val)):
            path = out_dir / f"{modality}_{split}.parquet"
            write_parquet(table.astype(str), path)
            written.append(path)
    return written


def write_skipped_triplets(path, reason: str) -> None:
    """An empty triplet table whose parquet metadata holds why the modality has no triplets (`skipped_triplets`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from musecl.embeddings import SKIPPED_KEY
    from musecl.storage import atomic_path

    schema = pa.schema([pa.field(c, pa.string()) for c in TRIPLET_COLUMNS], metadata={SKIPPED_KEY: reason.encode()})
    with atomic_path(path) as tmp:
        pq.write_table(pa.Table.from_pylist([], schema=schema), tmp)


def skipped_triplets(pairs_dir, modality: str) -> str | None:
    """Why the pairs stage wrote no triplets for `modality` (the city has no images of it), None otherwise."""
    from musecl.embeddings import skipped_reason

    return skipped_reason(Path(pairs_dir) / f"{modality}_train.parquet")


def read_triplets(pairs_dir, modality: str, split: str) -> pd.DataFrame:
    """A triplet table written by the `pairs` stage; errors name the file and the stage to run."""
    path = Path(pairs_dir) / f"{modality}_{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the `pairs` stage (notebooks/02_contrastive_pairs.ipynb) first")
    reason = skipped_triplets(pairs_dir, modality)
    if reason is not None:
        raise ValueError(f"{path}: the pairs stage wrote no {modality} triplets: {reason}")
    table = pd.read_parquet(path)
    missing = [c for c in TRIPLET_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return table.astype(object)
