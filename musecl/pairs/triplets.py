"""Triplet sampling: (anchor, positive, negative) regions and one random image of each (the pair algorithm, no I/O).

MuseCL's triplets (Algorithm 1, lines 3-5; the authors' `contrastive_sample.py`): anchor = a random region, positive =
one of its most similar other regions (top-k by λ, see `musecl.pairs.similarity`), negative = a random region different
from both, then one uniformly random image of each. The same builder serves the baselines through other *positive
rules* (`POSITIVE_RULES`): H3 neighbours, their union with the POI top-k, or a random region. Sampling is vectorised
and every random draw comes from the caller's `numpy.random.Generator`, in a fixed order (same seed => same triplets).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.pairs.similarity import (
    distant_pairs,
    informative_regions,
    most_similar,
    neighbour_candidates,
    union_candidates,
)

POSITIVE_RULES = ("similarity", "neighbours", "similarity+neighbours", "random")
TRIPLET_COLUMNS = (
    "anchor_region", "positive_region", "negative_region", "anchor_image", "positive_image", "negative_image",
)


@dataclass(frozen=True)
class ImageGroups:
    """Images of one modality grouped by region (CSR layout) for vectorised "random image of region r" draws."""

    image_ids: np.ndarray  # (n_images,) image ids, grouped by region
    offsets: np.ndarray  # (n_regions + 1,) start of each region's images in image_ids
    region_ids: pd.Index

    @classmethod
    def from_table(cls, images: pd.DataFrame, region_ids: pd.Index | list[str]) -> ImageGroups:
        region_ids = pd.Index(region_ids, name=REGION_ID)
        codes = region_ids.get_indexer(pd.Index(images[REGION_ID].astype(object)))
        if (codes < 0).any():
            bad = images[REGION_ID].to_numpy()[np.flatnonzero(codes < 0)[0]]
            raise ValueError(f"image table: region_id {bad!r} is not one of the bundle's regions")
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=len(region_ids))
        offsets = np.concatenate([[0], np.cumsum(counts)])
        return cls(images["image_id"].astype(object).to_numpy()[order], offsets, region_ids)

    @property
    def counts(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sample(self, regions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One uniformly random image id for each entry of `regions` (positions; each must have images)."""
        counts = self.counts[regions]
        if (counts == 0).any():
            raise ValueError(f"region {self.region_ids[regions[counts == 0][0]]} has no image to sample")
        pick = self.offsets[regions] + np.floor(rng.random(len(regions)) * counts).astype(np.int64)
        return self.image_ids[pick]


def _draw_other(pool: np.ndarray, exclude_a: np.ndarray, exclude_b: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Uniform draws from `pool` (sorted region positions) different from exclude_a and exclude_b (each in pool or
    -1)."""
    size = len(pool)
    ia = np.searchsorted(pool, exclude_a)
    ib = np.searchsorted(pool, exclude_b)
    a_in = (exclude_a >= 0) & (ia < size) & (pool[np.minimum(ia, size - 1)] == exclude_a)
    b_in = (exclude_b >= 0) & (ib < size) & (pool[np.minimum(ib, size - 1)] == exclude_b) & (exclude_b != exclude_a)
    n_excl = a_in.astype(np.int64) + b_in
    if (size - n_excl <= 0).any():
        raise ValueError("not enough regions to draw a region different from anchor and positive")
    r = np.floor(rng.random(len(exclude_a)) * (size - n_excl)).astype(np.int64)
    lo = np.where(a_in & b_in, np.minimum(ia, ib), np.where(a_in, ia, np.where(b_in, ib, size)))
    hi = np.where(a_in & b_in, np.maximum(ia, ib), size)
    r += r >= lo
    r += r >= hi
    return pool[r]


def sample_triplets(
    candidates: np.ndarray | None,
    groups: ImageGroups,
    anchors_pool: np.ndarray,
    n: int,
    rng: np.random.Generator,
    excluded_negatives: np.ndarray | None = None,
    negative_pool: np.ndarray | None = None,
) -> pd.DataFrame:
    """`n` triplets: anchor = uniform region of `anchors_pool`, positive = uniform among its candidates (the top-k most
    similar, or neighbours; `candidates=None`: a uniform random other region), negative = uniform region of
    `negative_pool` (default: every region with images) different from both and not in `excluded_negatives` (pair codes
    from `distant_pairs`); then one uniformly random image of each region.
    """
    has_images = np.flatnonzero(groups.counts > 0)
    negative_pool = has_images if negative_pool is None else np.sort(np.asarray(negative_pool))
    anchors_pool = np.asarray(anchors_pool)
    if len(anchors_pool) == 0:
        raise ValueError("no region can serve as anchor (each needs images and at least one positive candidate)")
    anchor = anchors_pool[rng.integers(0, len(anchors_pool), size=n)]
    if candidates is None:
        positive = _draw_other(has_images, anchor, np.full(n, -1), rng)
    else:
        n_cand = (candidates[anchor] >= 0).sum(axis=1)
        if (n_cand == 0).any():
            raise ValueError(f"anchor region {groups.region_ids[anchor[n_cand == 0][0]]} has no positive candidate")
        positive = candidates[anchor, np.floor(rng.random(n) * n_cand).astype(np.int64)]
    negative = _draw_other(negative_pool, anchor, positive, rng)
    if excluded_negatives is not None and len(excluded_negatives):
        n_regions = len(groups.region_ids)
        for _ in range(1000):
            bad = np.isin(anchor * n_regions + negative, excluded_negatives)
            if not bad.any():
                break
            negative[bad] = _draw_other(negative_pool, anchor[bad], positive[bad], rng)
        else:
            raise ValueError("could not draw distant negatives: every region is too close to some anchor")
    ids = groups.region_ids
    return pd.DataFrame(
        {
            "anchor_region": ids[anchor].astype(object),
            "positive_region": ids[positive].astype(object),
            "negative_region": ids[negative].astype(object),
            "anchor_image": groups.sample(anchor, rng),
            "positive_image": groups.sample(positive, rng),
            "negative_image": groups.sample(negative, rng),
        }
    )


@dataclass
class TripletSet:
    """Train and validation triplets of one modality, with what they were built from."""

    train: pd.DataFrame
    val: pd.DataFrame
    candidates: np.ndarray | None  # (N, k) positive candidates (region positions), None for the random rule
    anchors_train: np.ndarray
    anchors_val: np.ndarray
    region_ids: pd.Index
    images: pd.DataFrame | None = None  # the modality's image table (image_id, region_id[, path])
    rule: str | None = None  # the positive rule actually used (set by the pairs stage; differs after a fallback)
    note: str = ""  # why the rule differs from the configured one (empty when it does not)


def build_triplets(
    images: pd.DataFrame,
    region_ids: pd.Index | list[str],
    rng: np.random.Generator,
    rule: Literal["similarity", "neighbours", "similarity+neighbours", "random"] = "similarity",
    features: np.ndarray | None = None,
    metric: str = "cosine",
    top_k: int = 1,
    neighbour_ring: int = 1,
    negative_min_ring: int = 0,
    n_train: int = 10_000,
    n_val: int = 2_000,
    val_fraction: float = 0.2,
) -> TripletSet:
    """Train/validation triplets of one modality under a positive rule (MuseCL: `similarity` with top_k=1).

    `images`: the modality's image table (image_id, region_id). Anchors are split by region: a fraction `val_fraction`
    of the anchor regions only anchors validation triplets, so validation accuracy is measured on anchors the encoder
    was never trained to place (their images may still appear as positives/negatives of training triplets).
    `negative_min_ring` > 0 keeps negatives at least that many H3 steps from the anchor (Tile2Vec's distant tiles).
    """
    if rule not in POSITIVE_RULES:
        raise ValueError(f"unknown positive rule {rule!r}; choose one of {POSITIVE_RULES}")
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    region_ids = pd.Index(region_ids, name=REGION_ID)
    groups = ImageGroups.from_table(images, region_ids)
    with_images = groups.counts > 0
    if with_images.sum() < 3:
        raise ValueError(f"only {int(with_images.sum())} regions have images; triplets need at least 3")
    candidates = None
    usable = with_images.copy()
    if rule in ("similarity", "similarity+neighbours"):
        if features is None:
            raise ValueError(f"positive rule '{rule}' needs the regions' indicator features")
        if len(features) != len(region_ids):
            raise ValueError(f"features have {len(features)} rows, expected one per region ({len(region_ids)})")
        usable &= informative_regions(features, metric)
        candidates = most_similar(features, metric, top_k, candidates=usable, rng=rng)
    if rule in ("neighbours", "similarity+neighbours"):
        near = neighbour_candidates(np.asarray(region_ids), neighbour_ring, candidates=with_images)
        candidates = near if candidates is None else union_candidates(candidates, near)
    pool = np.flatnonzero(usable if candidates is None else usable & ((candidates >= 0).sum(axis=1) > 0))
    shuffled = rng.permutation(pool)
    n_val_anchors = min(max(1, int(round(val_fraction * len(pool)))), len(pool) - 1)
    anchors_val, anchors_train = np.sort(shuffled[:n_val_anchors]), np.sort(shuffled[n_val_anchors:])
    excluded = distant_pairs(np.asarray(region_ids), negative_min_ring) if negative_min_ring > 0 else None
    train = sample_triplets(candidates, groups, anchors_train, n_train, rng, excluded)
    val = sample_triplets(candidates, groups, anchors_val, n_val, rng, excluded)
    return TripletSet(train, val, candidates, anchors_train, anchors_val, region_ids, images)
