"""Caption refinement: drop the phrases of a caption that its own image does not support (UrbanLN's refinement step).

UrbanLN scores every visual-element phrase of a caption against the image with OWLv2 and removes phrases scoring
below 0.01 as hallucinations (docs/method.md §3.2). OWLv2 is not available offline, so **the grounding scorer here is
the image-text model's own phrase-image similarity** (a documented departure). A similarity's scale depends on the
model and its training, so the rule is rank-based: a phrase's grounding score is the percentile of its own image among
all images' similarity to that phrase (:func:`rank_scores`; 1.0 = its image is the most similar of all, 0.0 = the
least). A phrase that describes nothing particular to its image ranks its image anywhere, uniformly; a phrase its
image supports ranks it high.

**Default threshold 0.5** (drop a phrase whose own image ranks in the bottom half of the images for it): a choice in
the spirit of the paper's "remove what the image does not support", not tuned on any result. Its known weakness: a
true phrase that fits most images of the city ("there are buildings") need not rank its own image high, so the rule
removes unspecific phrases as well as false ones; `min_phrases` (default 1) keeps the best-scored phrases of a caption
whose phrases all fall below the threshold. UrbanLN's divide-and-conquer step (SAM crops, local captions, the MLLM
rewriting the caption) has no offline counterpart and is not reproduced.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import pandas as pd

from musecl.data.captions import phrases

DEFAULT_THRESHOLD = 0.5  # keep a phrase whose own image ranks in the top half of all images for it (a choice)
PhraseScorer = Callable[[list[str], np.ndarray], np.ndarray]


def rank_scores(similarity: np.ndarray, own: np.ndarray) -> np.ndarray:
    """Percentile of each phrase's own image among all images' similarity to the phrase.

    `similarity` is (n_phrases, n_images); `own[p]` the column of phrase p's image. Score = (images strictly less
    similar + half of the other images equally similar) / (n_images - 1): 1.0 when its image is the most similar, 0.0
    when the least, ties at mid-rank. With a single image there is nothing to rank against and the score is 1.0.
    """
    sim = np.asarray(similarity, dtype=np.float64)
    own = np.asarray(own, dtype=np.int64)
    if sim.ndim != 2:
        raise ValueError(f"similarity must be (n_phrases, n_images), got shape {sim.shape}")
    if own.shape != (sim.shape[0],):
        raise ValueError(f"own must give one image column per phrase ({sim.shape[0]}), got shape {own.shape}")
    n_images = sim.shape[1]
    if own.size and (own.min() < 0 or own.max() >= n_images):
        raise ValueError(f"own image columns must lie in [0, {n_images}), got range [{own.min()}, {own.max()}]")
    if n_images <= 1:
        return np.ones(sim.shape[0])
    mine = sim[np.arange(sim.shape[0]), own][:, None]
    below = (sim < mine).sum(axis=1)
    ties = (sim == mine).sum(axis=1) - 1  # the own image is always equal to itself
    return (below + 0.5 * ties) / (n_images - 1)


def caption_phrases(selected: pd.DataFrame) -> pd.DataFrame:
    """The phrases of every caption, one row each: `row` (position of the caption in `selected`), `image_id`,
    `phrase_index` (order in the caption) and `phrase`. Precomputed phrase scores for :func:`refine_captions` follow
    this order."""
    if "caption" not in selected.columns:
        raise ValueError(f"refine_captions: table lacks column 'caption'; it has {list(selected.columns)}")
    split = [phrases(text) for text in selected["caption"].fillna("").astype(str)]
    lengths = np.fromiter((len(s) for s in split), dtype=np.int64, count=len(split))
    row = np.repeat(np.arange(len(split)), lengths)
    ids = selected["image_id"].to_numpy()[row] if "image_id" in selected.columns else row
    return pd.DataFrame({
        "row": row,
        "image_id": ids,
        "phrase_index": np.concatenate([np.arange(n) for n in lengths]) if len(split) else np.array([], dtype=np.int64),
        "phrase": [p for s in split for p in s],
    })


def _image_columns(selected: pd.DataFrame, image_index: Mapping | pd.Series | None) -> np.ndarray:
    """Each caption's column on the scorer's image axis: `image_index` (image_id -> column), else the column
    `image_index` of `selected`, else the caption's position in `selected`."""
    if image_index is None:
        if "image_index" in selected.columns:
            return selected["image_index"].to_numpy(dtype=np.int64)
        return np.arange(len(selected), dtype=np.int64)
    lookup = pd.Series(image_index) if not isinstance(image_index, pd.Series) else image_index
    mapped = selected["image_id"].map(lookup)
    if mapped.isna().any():
        missing = selected["image_id"][mapped.isna()].head(5).tolist()
        raise ValueError(f"refine_captions: image_index has no column for image_id(s) {missing}")
    return mapped.to_numpy(dtype=np.int64)


def phrase_scores(table: pd.DataFrame, scores: PhraseScorer | np.ndarray | pd.Series,
                  image_columns: np.ndarray) -> np.ndarray:
    """Grounding score per phrase row of `table` (:func:`caption_phrases`): a precomputed vector in that order, or
    one call of the scorer `scores(phrases, image_columns)`, which returns a score per phrase, an (n_phrases,
    n_images) similarity matrix that :func:`rank_scores` turns into scores, or a result with a `rank` field (e.g.
    :func:`musecl.imagetext.retrieval.phrase_image_similarity`'s `PhraseScores`), whose ranks are the scores."""
    own = image_columns[table["row"].to_numpy()] if len(table) else np.array([], dtype=np.int64)
    if callable(scores):
        result = scores(table["phrase"].tolist(), own)
        out = np.asarray(getattr(result, "rank", result), dtype=np.float64)
        if out.ndim == 2:
            out = rank_scores(out, own)
    else:
        out = np.asarray(scores, dtype=np.float64)
    if out.shape != (len(table),):
        raise ValueError(f"refine_captions: expected one score per phrase ({len(table)} phrases, in the order of "
                         f"caption_phrases), got shape {out.shape}")
    return out


def refine_captions(selected: pd.DataFrame, scores: PhraseScorer | np.ndarray | pd.Series,
                    threshold: float = DEFAULT_THRESHOLD, min_phrases: int = 1,
                    image_index: Mapping | pd.Series | None = None) -> pd.DataFrame:
    """Drop the phrases of each caption whose grounding score is below `threshold`, keeping at least `min_phrases`
    (the best-scored; ties to the earlier phrase), and rejoin the kept ones in their order.

    `scores`: a scorer `(phrases, image_columns) -> scores or similarity matrix` (one call for all phrases), or
    precomputed scores in the order of :func:`caption_phrases`. A phrase without a score (NaN) is kept. Returns
    `selected` with `caption` refined and `original_caption`, `kept_phrases`, `removed_phrases`, `phrase_scores`,
    `n_kept`, `n_removed` added.
    """
    if min_phrases < 0:
        raise ValueError(f"min_phrases must be >= 0, got {min_phrases}")
    table = caption_phrases(selected)
    table["score"] = phrase_scores(table, scores, _image_columns(selected, image_index))
    order = table.assign(_neg=-table["score"].fillna(np.inf)).sort_values(["row", "_neg", "phrase_index"],
                                                                          kind="stable")
    best_rank = order.groupby("row").cumcount().reindex(table.index).to_numpy()
    keep = (table["score"].isna() | (table["score"] >= threshold)).to_numpy() | (best_rank < min_phrases)
    table["keep"] = keep
    n = len(selected)

    def per_row(frame: pd.DataFrame, column: str) -> list:
        grouped = frame.groupby("row")[column].agg(list)
        return [grouped.get(r, []) for r in range(n)]

    kept = per_row(table[keep], "phrase")
    removed = per_row(table[~keep], "phrase")
    out = selected.reset_index(drop=True).copy()
    out["original_caption"] = out["caption"]
    out["caption"] = [" ".join(k) for k in kept]
    out["kept_phrases"] = kept
    out["removed_phrases"] = removed
    out["phrase_scores"] = per_row(table, "score")
    out["n_kept"] = np.array([len(k) for k in kept], dtype=np.int64)
    out["n_removed"] = np.array([len(r) for r in removed], dtype=np.int64)
    return out
