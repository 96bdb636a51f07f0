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


def region_indicator_tables(bundle, cfg: dict) -> dict[str, pd.DataFrame]:
    """The two region descriptions positives are chosen by: `mobility` (inflow, outflow) and `poi` (K category
    counts)."""
    from musecl.mobility import mobility_counts

    mobility_cfg = dict(cfg.get("mobility", {}))
    mobility = mobility_counts(bundle, **mobility_cfg)
    regions = mobility.index
    poi = poi_category_counts(bundle.pois(), regions, bundle.h3_resolution, level=int(cfg.get("poi_level", 1)))
    return {"mobility": mobility, "poi": poi}


def modality_rng(seed: int, modality: str) -> np.random.Generator:
    """The random stream of one modality (or baseline run) `modality`: seeded by (seed, crc32 of the name), so adding or
    changing one modality leaves the others' draws as they were."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(modality.encode())]))




def modality_triplets(bundle, tables: dict[str, pd.DataFrame], cfg: dict, seed: int) -> dict[str, TripletSet]:
    """Train/val triplets for each modality of `cfg["modalities"]` (rs, sv) under its rule and indicator source.

    Each modality draws from its own seeded stream, so adding or changing one modality leaves the other's triplets as
    they were.
    """
    from musecl.encoders.image_cache import image_table

    return {
        modality: triplets_from_spec(image_table(bundle, modality), tables, spec, cfg, modality_rng(seed, modality),
                                     f"pairs.modalities.{modality}")
        for modality, spec in cfg["modalities"].items()
    }


def triplets_from_spec(images: pd.DataFrame, tables: dict[str, pd.DataFrame], spec: dict, cfg: dict,
                       rng: np.random.Generator, where: str) -> TripletSet:
    """Triplets of one image table under a `pairs.modalities.<m>`-shaped spec (indicator, rule, top_k, rings, sizes);
    `cfg` is the whole `pairs` section (similarity metrics, val_fraction), `where` names the spec in errors."""
    source = spec.get("indicator", "poi")
    if source not in INDICATOR_SOURCES:
        raise ValueError(f"{where}.indicator must be one of {INDICATOR_SOURCES}, got {source!r}")
    return build_triplets(
        images,
        tables[source].index,
        rng,
        rule=spec.get("rule", "similarity"),
        features=tables[source].to_numpy(),
        metric=cfg["similarity"][source],
        top_k=int(spec.get("top_k", 1)),
        neighbour_ring=int(spec.get("neighbour_ring", 1)),
        negative_min_ring=int(spec.get("negative_min_ring", 0)),
        n_train=int(spec["n_train"]),
        n_val=int(spec["n_val"]),
        val_fraction=float(cfg.get("val_fraction", 0.2)),
    )


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
    return pd.DataFrame(rows).T


def pair_metrics(check_summary: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The stage's DVC metrics (reports/pairs.json) from the summary of `pair_checks`: per modality, the share of
    triplets whose positive is closer on the indicators, and the mean λ of positive and of random pairs."""
    return {m: {"positive_closer_share_indicators": float(row["indicators: P(positive closer)"]),
                "mean_similarity_positive": float(row["mean λ positive"]),
                "mean_similarity_random": float(row["mean λ random"])}
            for m, row in check_summary.iterrows()}


# ---- files ----------------------------------------------------------------------------------------------------------
def write_pairs(out_dir, tables: dict[str, pd.DataFrame], sets: dict[str, TripletSet]) -> list:
    """Write the counts (`mobility.parquet`, `poi_counts.parquet`) and `<modality>_{train,val}.parquet` atomically."""
    out_dir = Path(out_dir)
    written = []
    for name, table in (("mobility", tables["mobility"]), ("poi_counts", tables["poi"])):
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


def read_triplets(pairs_dir, modality: str, split: str) -> pd.DataFrame:
    """A triplet table written by the `pairs` stage; errors name the file and the stage to run."""
    path = Path(pairs_dir) / f"{modality}_{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the `pairs` stage (notebooks/02_contrastive_pairs.ipynb) first")
    table = pd.read_parquet(path)
    missing = [c for c in TRIPLET_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return table.astype(object)
