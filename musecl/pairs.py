"""Contrastive samples: which images should an encoder pull together?

MuseCL's first step (Algorithm 1, lines 3-5): count each region's mobility (m^in, m^out) and POI mix (POI^1..POI^K),
turn them into region similarities λ^PM and λ^POI, and build triplets (anchor, positive, negative) of images, where the
positive comes from the region most similar to the anchor's and the negative from a random region. Remote-sensing tiles
use λ^POI, street-view images λ^PM (the authors' README; swappable by parameter).

The paper's similarity formulas (its eqs. 2 and 4) are unknown, so the metric is a parameter (`SIMILARITY_METRICS`);
only the ranking matters, because the positive is the top-1 (top-k) region. The same triplet builder serves the
baselines through other *positive rules*: H3 neighbours (Tile2Vec, Urban2Vec), their union with the POI top-k
(PG-SimCLR), or a random region (the ablation without similarity-based pairs).

Everything is vectorised (chunked similarity blocks, array sampling) and every random draw comes from the caller's
`numpy.random.Generator`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

SIMILARITY_METRICS = ("cosine", "cosine_log1p", "log_l2", "neg_l1", "neg_l1_share")
POSITIVE_RULES = ("similarity", "neighbours", "similarity+neighbours", "random")
TRIPLET_COLUMNS = (
    "anchor_region", "positive_region", "negative_region", "anchor_image", "positive_image", "negative_image",
)
_CHUNK_ROWS = 1024


# ---- indicators per region --------------------------------------------------------------------------------------
def poi_category_counts(
    pois: pd.DataFrame, region_ids: pd.Index | list[str], resolution: int, level: int = 1
) -> pd.DataFrame:
    """POI counts per region and category (regions x K; K = the categories present at `level` of 'level1;level2').

    Level 1 gives MuseCL's K first-level categories; level 2 uses the full two-level category string.
    """
    from musecl.data.regions import assign_points_to_regions

    for column in ("lon", "lat", "category"):
        if column not in pois.columns:
            raise ValueError(f"pois: missing column '{column}' (have {list(pois.columns)})")
    if level not in (1, 2):
        raise ValueError(f"pairs.poi.level must be 1 or 2, got {level!r}")
    region_ids = pd.Index(region_ids, name=REGION_ID)
    category = pois["category"].astype(str)
    if level == 1:
        category = category.str.split(";", n=1).str[0]
    names = assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), region_ids, resolution)
    rows = region_ids.get_indexer(pd.Index(names.astype(object)))
    rows[pd.isna(names)] = -1
    codes, categories = pd.factorize(category, sort=True)
    keep = (rows >= 0) & (codes >= 0)
    flat = np.bincount(rows[keep] * len(categories) + codes[keep], minlength=len(region_ids) * len(categories))
    return pd.DataFrame(
        flat.reshape(len(region_ids), len(categories)),
        index=region_ids,
        columns=pd.Index([str(c) for c in categories], name="category"),
    )


# ---- similarities -----------------------------------------------------------------------------------------------
def _prepare(features: np.ndarray, metric: str) -> np.ndarray:
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be a (regions, dims) array, got shape {x.shape}")
    if metric not in SIMILARITY_METRICS:
        raise ValueError(f"unknown similarity metric {metric!r}; choose one of {SIMILARITY_METRICS}")
    if metric in ("cosine_log1p", "log_l2"):
        if (x < 0).any():
            raise ValueError(f"similarity '{metric}' takes log1p of counts and needs non-negative features")
        x = np.log1p(x)
    if metric in ("cosine", "cosine_log1p"):
        norm = np.linalg.norm(x, axis=1, keepdims=True)
        x = np.divide(x, norm, out=np.zeros_like(x), where=norm > 0)
    if metric == "neg_l1_share":
        total = x.sum(axis=1, keepdims=True)
        x = np.divide(x, total, out=np.zeros_like(x), where=total > 0)
    return x


def _block(x: np.ndarray, rows: np.ndarray, metric: str) -> np.ndarray:
    """Similarity of regions `rows` to every region, on already-prepared features."""
    if metric in ("cosine", "cosine_log1p"):
        return x[rows] @ x.T
    if metric == "log_l2":
        sq = (x[rows] ** 2).sum(1)[:, None] + (x**2).sum(1)[None, :] - 2.0 * (x[rows] @ x.T)
        return 1.0 / (1.0 + np.sqrt(np.maximum(sq, 0.0)))
    # L1 distances, one feature at a time to keep memory at (rows x regions)
    dist = np.zeros((len(rows), x.shape[0]))
    for d in range(x.shape[1]):
        dist += np.abs(x[rows, d][:, None] - x[None, :, d])
    return -dist


def similarity_matrix(features: np.ndarray, metric: str) -> np.ndarray:
    """Full (regions x regions) similarity matrix λ for `metric` (see `SIMILARITY_METRICS`).

    * `cosine`: cosine of the raw count vectors (MuseCL's suggested λ^POI); 0 for a region without any count.
    * `cosine_log1p`: cosine of log(1 + counts), less dominated by the largest category.
    * `log_l2`: 1 / (1 + ||log(1+v_i) - log(1+v_j)||), magnitude-aware (the suggested λ^PM on [m^in, m^out]).
    * `neg_l1`: minus the L1 distance of the raw counts.
    * `neg_l1_share`: minus the L1 distance of the category shares (counts / total).
    """
    x = _prepare(features, metric)
    n = x.shape[0]
    out = np.empty((n, n))
    for start in range(0, n, _CHUNK_ROWS):
        rows = np.arange(start, min(start + _CHUNK_ROWS, n))
        out[rows] = _block(x, rows, metric)
    return out


def informative_regions(features: np.ndarray, metric: str) -> np.ndarray:
    """Regions whose similarity to others is defined: cosine needs at least one non-zero count."""
    x = np.asarray(features, dtype=np.float64)
    if metric.startswith("cosine") or metric == "neg_l1_share":
        return np.abs(x).sum(axis=1) > 0
    return np.ones(x.shape[0], dtype=bool)


def most_similar(
    features: np.ndarray,
    metric: str,
    k: int,
    candidates: np.ndarray | None = None,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The `k` regions most similar to each region (never itself), as an (N, k) array of region positions.

    `candidates` (bool mask) limits which regions may be chosen; rows with fewer than k candidates are padded with -1.
    Ties are broken uniformly at random with `rng` (by ranking on a random column permutation), not by region order.
    Works in row blocks, so memory is O(block x N) rather than O(N^2).
    """
    if k < 1:
        raise ValueError(f"top_k must be >= 1, got {k}")
    x = _prepare(features, metric)
    n = x.shape[0]
    allowed = np.ones(n, dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    perm = (rng or np.random.default_rng(0)).permutation(n)
    allowed_perm = allowed[perm]
    self_column = np.argsort(perm)  # where each region sits after the permutation
    kk = min(k, n)
    out = np.full((n, k), -1, dtype=np.int64)
    for start in range(0, n, _CHUNK_ROWS):
        rows = np.arange(start, min(start + _CHUNK_ROWS, n))
        block = _block(x, rows, metric)[:, perm]
        block[:, ~allowed_perm] = -np.inf
        block[np.arange(len(rows)), self_column[rows]] = -np.inf  # never the region itself
        if kk < n:
            top = np.argpartition(-block, kk - 1, axis=1)[:, :kk]
        else:
            top = np.tile(np.arange(n), (len(rows), 1))
        top_sim = np.take_along_axis(block, top, axis=1)
        order = np.argsort(-top_sim, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        top_sim = np.take_along_axis(top_sim, order, axis=1)
        chosen = np.where(np.isfinite(top_sim), perm[top], -1)
        out[rows, :kk] = chosen
    return _pack_left(out)


def _pack_left(candidates: np.ndarray) -> np.ndarray:
    """Move the valid (>= 0) entries of each row to its front, keeping their order."""
    order = np.argsort(candidates < 0, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1)


def neighbour_candidates(region_ids: list[str] | np.ndarray, ring: int = 1, candidates: np.ndarray | None = None) -> np.ndarray:
    """Regions within `ring` H3 steps of each region (itself excluded), padded with -1 (Tile2Vec/Urban2Vec positives)."""
    import h3

    region_ids = pd.Index(np.asarray(region_ids, dtype=object))
    allowed = np.ones(len(region_ids), dtype=bool) if candidates is None else np.asarray(candidates, dtype=bool)
    lists = []
    for cell in region_ids:
        found = region_ids.get_indexer(pd.Index([c for c in h3.grid_disk(str(cell), ring) if c != cell], dtype=object))
        found = found[found >= 0]
        lists.append(np.sort(found[allowed[found]]))
    width = max(1, max((len(f) for f in lists), default=1))
    out = np.full((len(region_ids), width), -1, dtype=np.int64)
    for i, found in enumerate(lists):
        out[i, : len(found)] = found
    return out


def union_candidates(*parts: np.ndarray) -> np.ndarray:
    """Row-wise union of candidate arrays (duplicates removed, -1 padding)."""
    stacked = np.concatenate(parts, axis=1)
    stacked = np.sort(stacked, axis=1)
    dup = np.zeros_like(stacked, dtype=bool)
    dup[:, 1:] = stacked[:, 1:] == stacked[:, :-1]
    stacked[dup] = -1
    packed = _pack_left(stacked)
    width = max(1, int((packed >= 0).sum(axis=1).max(initial=1)))
    return packed[:, :width]


def distant_pairs(region_ids: list[str] | np.ndarray, min_ring: int) -> np.ndarray:
    """Codes `a * N + b` of region pairs closer than `min_ring` H3 steps (excluded as negatives), sorted."""
    if min_ring <= 0:
        return np.empty(0, dtype=np.int64)
    close = neighbour_candidates(region_ids, ring=min_ring - 1) if min_ring > 1 else np.full((len(region_ids), 1), -1)
    n = len(region_ids)
    a = np.repeat(np.arange(n), close.shape[1])
    b = close.ravel()
    return np.sort(a[b >= 0] * n + b[b >= 0])


# ---- triplets ---------------------------------------------------------------------------------------------------
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
    """Uniform draws from `pool` (sorted region positions) different from exclude_a and exclude_b (each in pool or -1)."""
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


# ---- checks -----------------------------------------------------------------------------------------------------
def indicator_agreement(indicators: pd.DataFrame, triplets: pd.DataFrame) -> pd.DataFrame:
    """Do positives share the anchor's indicators more than random regions do?

    For each indicator (standardised over regions) and for all of them together (Euclidean distance of the standardised
    vectors): the mean absolute difference anchor-positive and anchor-negative (the negative is a uniformly random
    region, i.e. a random pair), and the share of triplets in which the positive is strictly closer than the random region
    (ties count half). 0.5 means positives are no better than random.
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


# ---- figures ----------------------------------------------------------------------------------------------------
def plot_similarity_distributions(similarities: dict[str, np.ndarray], pair_sims: dict[str, pd.DataFrame]):
    """One panel per similarity: histogram of all region pairs vs the chosen positive pairs."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(similarities), figsize=(5.2 * len(similarities), 3.6), squeeze=False)
    for ax, (name, sim) in zip(axes[0], similarities.items()):
        upper = sim[np.triu_indices(sim.shape[0], k=1)]
        bins = np.linspace(np.nanmin(upper), np.nanmax(upper), 41)
        ax.hist(upper, bins=bins, density=True, alpha=0.55, label="all region pairs")
        if name in pair_sims:
            ax.hist(pair_sims[name]["positive"], bins=bins, density=True, alpha=0.55, label="anchor-positive pairs")
        ax.set_title(name)
        ax.set_xlabel("similarity λ")
        ax.set_ylabel("density")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_indicator_agreement(checks: dict[str, pd.DataFrame]):
    """Share of triplets whose positive is closer to the anchor than a random region, per indicator and modality."""
    import matplotlib.pyplot as plt

    table = pd.DataFrame({name: check["positive_closer_share"] for name, check in checks.items()})
    fig, ax = plt.subplots(figsize=(1.1 * len(table) + 3, 3.6))
    table.plot.bar(ax=ax, rot=30)
    ax.axhline(0.5, color="black", lw=1, ls="--", label="random (0.5)")
    ax.set_ylabel("P(positive closer than random)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---- the `pairs` stage (notebooks/02_contrastive_pairs.ipynb) ----------------------------------------------------
INDICATOR_SOURCES = ("poi", "mobility")


def region_indicator_tables(bundle, cfg: dict) -> dict[str, pd.DataFrame]:
    """The two region descriptions positives are chosen by: `mobility` (inflow, outflow) and `poi` (K category counts)."""
    from musecl.mobility import mobility_counts

    mobility_cfg = dict(cfg.get("mobility", {}))
    mobility = mobility_counts(bundle, **mobility_cfg)
    regions = mobility.index
    poi = poi_category_counts(bundle.pois(), regions, bundle.h3_resolution, level=int(cfg.get("poi_level", 1)))
    return {"mobility": mobility, "poi": poi}


def region_similarities(tables: dict[str, pd.DataFrame], metrics: dict[str, str]) -> dict[str, np.ndarray]:
    """λ per indicator source (`mobility` -> λ^PM, `poi` -> λ^POI) with the metric named in `metrics`."""
    return {name: similarity_matrix(tables[name].to_numpy(), metrics[name]) for name in tables}


def _modality_rng(seed: int, modality: str) -> np.random.Generator:
    import zlib

    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(modality.encode())]))


def modality_triplets(bundle, tables: dict[str, pd.DataFrame], cfg: dict, seed: int) -> dict[str, TripletSet]:
    """Train/val triplets for each modality of `cfg["modalities"]` (rs, sv) under its rule and indicator source.

    Each modality draws from its own seeded stream, so adding or changing one modality leaves the other's triplets as
    they were.
    """
    from musecl.encoders.image_cache import image_table

    return {
        modality: triplets_from_spec(image_table(bundle, modality), tables, spec, cfg, _modality_rng(seed, modality),
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
            "regions with images": images["region_id"].nunique() if images is not None else np.nan,
            "images outside regions": images.attrs.get("outside_regions", 0) if images is not None else np.nan,
            "train anchors": len(ts.anchors_train),
            "val anchors": len(ts.anchors_val),
            "train triplets": len(ts.train),
            "val triplets": len(ts.val),
            "distinct train (anchor, positive) regions": len(ts.train[["anchor_region", "positive_region"]].drop_duplicates()),
            "distinct train anchor images": ts.train["anchor_image"].nunique(),
        }
    return pd.DataFrame(rows).T


def write_pairs(out_dir, tables: dict[str, pd.DataFrame], sets: dict[str, TripletSet]) -> list:
    """Write the counts (`mobility.parquet`, `poi_counts.parquet`) and `<modality>_{train,val}.parquet` atomically."""
    from pathlib import Path

    from musecl.storage import write_parquet

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
    from pathlib import Path

    path = Path(pairs_dir) / f"{modality}_{split}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run the `pairs` stage (notebooks/02_contrastive_pairs.ipynb) first")
    table = pd.read_parquet(path)
    missing = [c for c in TRIPLET_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing}")
    return table.astype(object)


def pair_checks(
    bundle, sets: dict[str, TripletSet], similarities: dict[str, np.ndarray], cfg: dict
) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Positive-vs-random checks on the training triplets of every modality.

    Returns ({modality: indicator_agreement table on the bundle's (transformed) indicators, plus the latent variables
    when the bundle is synthetic}, one summary row per modality: λ of positive vs random pairs and the indicator shares).
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
        sims = similarity_of_pairs(similarities[source], ts.region_ids, ts.train)
        rows[modality] = {
            "similarity": source,
            "mean λ positive": sims["positive"].mean(),
            "mean λ random": sims["random"].mean(),
            "indicators: P(positive closer)": table.loc["all (euclidean)", "positive_closer_share"],
            "indicators: mean distance positive": table.loc["all (euclidean)", "mean_diff_positive"],
            "indicators: mean distance random": table.loc["all (euclidean)", "mean_diff_random"],
        }
        if latents is not None:
            rows[modality]["latents: P(positive closer)"] = table.loc["latent: all (euclidean)", "positive_closer_share"]
    return checks, pd.DataFrame(rows).T


def plot_triplet_examples(bundle, ts: TripletSet, n: int = 4, title: str = ""):
    """The first `n` training triplets as images: anchor | positive | negative, with their regions."""
    import matplotlib.pyplot as plt

    paths = ts.images.set_index("image_id")["path"]
    fig, axes = plt.subplots(n, 3, figsize=(6.6, 2.3 * n), squeeze=False)
    for row, (_, t) in zip(axes, ts.train.head(n).iterrows()):
        for ax, role in zip(row, ("anchor", "positive", "negative")):
            ax.imshow(bundle.image(paths[t[f"{role}_image"]]))
            ax.set_title(f"{role}\n{t[f'{role}_region']}", fontsize=8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
