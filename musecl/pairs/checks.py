"""Pair quality checks: do the chosen positives share more with their anchors than random regions do?

The method's premise is that a region's most similar region by POI mix (or mobility) also resembles it in what is
later predicted. These functions measure it on the triplets of the `pairs` stage: per indicator (and on the hidden
latents of a synthetic city), how often the positive is closer to the anchor than the triplet's random negative, and
λ of positive versus random pairs. They also check the written triplet tables' invariants (notebook 02's checks).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from musecl.pairs.stage import read_triplets
from musecl.pairs.triplets import TripletSet


def indicator_agreement(indicators: pd.DataFrame, triplets: pd.DataFrame) -> pd.DataFrame:
    """Do positives share the anchor's indicators more than random regions do?

    For each indicator (standardised over regions) and for all of them together (Euclidean distance of the standardised
    vectors): the mean absolute difference anchor-positive and anchor-negative (the negative is a uniformly random
    region, i.e. a random pair), and the share of triplets in which the positive is strictly closer than the random
    region (ties count half). 0.5 means positives are no better than random.
    """
    z = indicators.astype(np.float64)
    std = z.std(axis=0, ddof=0).replace(0.0, 1.0)
    z = (z - z.mean(axis=0)) / std
    index = z.index
    values = z.to_numpy()
    a = values[index.get_indexer(pd.Index(triplets["anchor_region"].astype(object)))]
    p = values[index.get_indexer(pd.Index(triplets["positive_region"].astype(object)))]
    r = values[index.get_indexer(pd.Index(triplets["negative_region"].astype(object)))]
    d_pos = np.abs(a - p)
    d_rand = np.abs(a - r)
    d_pos_all = np.linalg.norm(a - p, axis=1)[:, None]
    d_rand_all = np.linalg.norm(a - r, axis=1)[:, None]
    d_pos, d_rand = np.hstack([d_pos, d_pos_all]), np.hstack([d_rand, d_rand_all])
    closer = (d_pos < d_rand).mean(axis=0) + 0.5 * (d_pos == d_rand).mean(axis=0)
    return pd.DataFrame(
        {
            "mean_diff_positive": d_pos.mean(axis=0),
            "mean_diff_random": d_rand.mean(axis=0),
            "positive_closer_share": closer,
        },
        index=pd.Index([*z.columns.astype(str), "all (euclidean)"], name="indicator"),
    )


def similarity_of_pairs(similarity: np.ndarray, region_ids: pd.Index, triplets: pd.DataFrame) -> pd.DataFrame:
    """λ(anchor, positive) and λ(anchor, random negative) of every triplet."""
    a = region_ids.get_indexer(pd.Index(triplets["anchor_region"].astype(object)))
    p = region_ids.get_indexer(pd.Index(triplets["positive_region"].astype(object)))
    r = region_ids.get_indexer(pd.Index(triplets["negative_region"].astype(object)))
    return pd.DataFrame({"positive": similarity[a, p], "random": similarity[a, r]})


def positive_pair_similarities(
    sets: dict[str, TripletSet], similarities: dict[str, np.ndarray], cfg: dict
) -> dict[str, pd.DataFrame]:
    """`similarity_of_pairs` of each modality's training triplets, keyed by the indicator source that chose them
    (`poi`, `mobility`; a source no modality uses is absent; two modalities on one source: the later one)."""
    out = {}
    for modality, ts in sets.items():
        source = cfg["modalities"][modality].get("indicator", "poi")
        if source in similarities and not ts.note:  # not after a fallback: the positives were not chosen by λ
            out[source] = similarity_of_pairs(similarities[source], ts.region_ids, ts.train)
    return out


def pair_checks(
    bundle, sets: dict[str, TripletSet], similarities: dict[str, np.ndarray], cfg: dict
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Positive-vs-random checks on the training triplets of every modality.

    Returns ({modality: indicator_agreement table on the bundle's (transformed) indicators, plus the latent variables
    when the bundle is synthetic}, one summary row per modality: λ of positive vs random pairs and the indicator
    shares).
    """
    indicators = bundle.indicators(transformed=True)
    latents = bundle.latents()
    checks, rows = {}, {}
    for modality, ts in sets.items():
        source = cfg["modalities"][modality].get("indicator", "poi")
        table = indicator_agreement(indicators, ts.train)
        if latents is not None:
            lat = indicator_agreement(latents, ts.train)
            lat.index = [f"latent: {i}" for i in lat.index]
            table = pd.concat([table, lat])
        checks[modality] = table
        if source in similarities and not ts.note:
            sims = similarity_of_pairs(similarities[source], ts.region_ids, ts.train)
        else:  # the positives came from a fallback rule (`musecl.pairs.stage.resolve_spec`): no λ to compare
            sims = pd.DataFrame({"positive": [np.nan], "random": [np.nan]})
        rows[modality] = {
            "similarity": source if not ts.note else f"none ({ts.rule})",
            "mean λ positive": sims["positive"].mean(),
            "mean λ random": sims["random"].mean(),
            "indicators: P(positive closer)": table.loc["all (euclidean)", "positive_closer_share"],
            "indicators: mean distance positive": table.loc["all (euclidean)", "mean_diff_positive"],
            "indicators: mean distance random": table.loc["all (euclidean)", "mean_diff_random"],
        }
        if latents is not None:
            latent_share = table.loc["latent: all (euclidean)", "positive_closer_share"]
            rows[modality]["latents: P(positive closer)"] = latent_share
    return checks, pd.DataFrame(rows).T


def indicator_agreement_table(checks: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """The per-modality `indicator_agreement` tables of `pair_checks` side by side (columns: modality, measure)."""
    return pd.concat({modality: check for modality, check in checks.items()}, axis=1)


def written_triplet_checks(pairs_dir: str | Path, sets: dict[str, TripletSet], cfg: dict) -> pd.DataFrame:
    """Re-read the triplet files the stage wrote and check their invariants; one row per (modality, split).

    Every column is a boolean that must be True: the configured number of triplets (`pairs.modalities.<m>.n_<split>`),
    three distinct regions per triplet, anchor images from the modality's image table, and validation anchors that
    never anchor a training triplet.
    """
    rows = {}
    for modality, ts in sets.items():
        held_out = not set(ts.val["anchor_region"]) & set(ts.train["anchor_region"])
        known_images = set(ts.images["image_id"])
        for split in ("train", "val"):
            table = read_triplets(pairs_dir, modality, split)
            rows[(modality, split)] = {
                "configured size": len(table) == int(cfg["modalities"][modality][f"n_{split}"]),
                "positive != anchor": bool((table["positive_region"] != table["anchor_region"]).all()),
                "negative != anchor": bool((table["negative_region"] != table["anchor_region"]).all()),
                "negative != positive": bool((table["negative_region"] != table["positive_region"]).all()),
                "anchor images known": set(table["anchor_image"]) <= known_images,
                "val anchors held out": held_out,
            }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis(["modality", "split"])
