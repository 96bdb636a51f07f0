"""Region similarities λ^PM and λ^POI, and the positive candidates they give (the pair algorithm, no I/O).

MuseCL's positives are the regions most similar to an anchor by mobility (λ^PM on [m^in, m^out]) or by POI mix
(λ^POI on the K category counts). The paper's formulas (its eqs. 2 and 4) are unknown, so the metric is a parameter
(`SIMILARITY_METRICS`); only the ranking matters, because the positive is the top-1 (top-k) region. The baselines'
positive rules draw their candidates here too: H3 neighbours (Tile2Vec, Urban2Vec) and their union with the POI top-k
(PG-SimCLR). Similarities are computed in row blocks, so memory stays O(block x regions).
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID

SIMILARITY_METRICS = ("cosine", "cosine_log1p", "log_l2", "neg_l1", "neg_l1_share")
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


def region_similarities(tables: dict[str, pd.DataFrame], metrics: dict[str, str]) -> dict[str, np.ndarray]:
    """λ per indicator source (`mobility` -> λ^PM, `poi` -> λ^POI) with the metric named in `metrics`."""
    return {name: similarity_matrix(tables[name].to_numpy(), metrics[name]) for name in tables}


def informative_regions(features: np.ndarray, metric: str) -> np.ndarray:
    """Regions whose similarity to others is defined: cosine needs at least one non-zero count."""
    x = np.asarray(features, dtype=np.float64)
    if metric.startswith("cosine") or metric == "neg_l1_share":
        return np.abs(x).sum(axis=1) > 0
    return np.ones(x.shape[0], dtype=bool)


def degenerate_cause(features: np.ndarray, metric: str, source: str = "indicator") -> str | None:
    """Why the similarity `metric` on `features` cannot rank regions, or None when it can.

    Degenerate: fewer than two regions with a defined similarity (cosine of an all-zero vector), or every region's
    vector the same once the metric has normalised it (e.g. placeholder POIs that all share one category: every cosine
    is 1.0; mobility counted as 0 everywhere), so every candidate ties and the positives would be arbitrary.
    """
    x = np.asarray(features, dtype=np.float64)
    n = x.shape[0]
    if x.ndim != 2 or x.shape[1] == 0:
        return f"the {source} table has no columns (no category / count to compare regions by)"
    informative = informative_regions(x, metric)
    if informative.sum() < 2:
        return (f"only {int(informative.sum())} of {n} regions have a non-zero {source} vector, and '{metric}' is "
                "undefined for an all-zero one")
    prepared = _prepare(x[informative], metric)
    if np.allclose(prepared, prepared[:1], rtol=0.0, atol=1e-12):
        example = np.round(x[informative][0], 3).tolist()
        hint = " (e.g. all POIs share one category)" if source == "poi" and x.shape[1] == 1 else ""
        return (f"every one of the {int(informative.sum())} regions has the same {source} vector under '{metric}' "
                f"(first: {example[:6]}){hint}: every similarity is equal, so every candidate ties")
    return None


# ---- positive candidates ----------------------------------------------------------------------------------------
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


def neighbour_candidates(
    region_ids: list[str] | np.ndarray, ring: int = 1, candidates: np.ndarray | None = None
) -> np.ndarray:
    """Regions within `ring` H3 steps of each region (itself excluded), padded with -1 (Tile2Vec/Urban2Vec
    positives)."""
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
