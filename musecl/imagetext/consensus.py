"""CAPTURE-style consensus selection among several captions of one image (UrbanLN's "consensus-based selection").

UrbanLN asks five MLLMs for a caption of each image and keeps the candidate with the highest mean CAPTURE score to the
other four (docs/method.md §3.2). CAPTURE (Dong et al. 2024, code foundation-multimodal-models/CAPTURE) parses each
caption into objects, attributes and relations, matches them in three stages (exact, WordNet synonym, soft match by
Sentence-BERT similarity of the leftovers), computes an F1 per kind and combines the three F1s with weights
alpha : beta : gamma = 0.5 : 0.5 : 0.2, i.e. **5 : 5 : 2** [CODE of CAPTURE, certain; method.md does not give the
weights]. Here:

* facts come from the caption parser (:func:`musecl.data.captions.parse_caption`), which already canonicalises
  synonyms, so the synonym stage is the exact stage;
* **soft match (departure)**: offline there is no Sentence-BERT, so a fact of one caption without an exact partner
  counts `soft` (default 0.5) when an unmatched fact of the other caption has the same subject and the same
  :func:`~musecl.data.captions.fact_family` but another value ("tall building" vs "low building"). As in CAPTURE, only
  the facts left unmatched by the exact stage take part, and the two sides are counted separately: precision uses the
  soft matches of `a`'s leftovers, recall those of `b`'s, so the score is symmetric. Objects have no value, so they
  never match softly;
* **empty sets (departure)**: CAPTURE divides by ``len + 1e-6``, so a kind that neither caption mentions scores F1 = 0
  and still carries its weight. Here such a kind is left out and the weights are renormalised over the kinds at least
  one caption mentions (agreeing on an absence is no evidence either way); a kind only one side mentions scores 0; two
  captions without any fact score 0.

Selection is vectorised over images: the facts of all candidates become one long table of (image, fact) rows with a
membership column per captioner, and each pair of captioners is scored for every image at once.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from musecl.data.captions import Fact, fact_family, parse_caption

KINDS: tuple[str, ...] = ("object", "attribute", "relation")
CAPTURE_WEIGHTS: tuple[float, float, float] = (5.0, 5.0, 2.0)  # CAPTURE's alpha : beta : gamma = 0.5 : 0.5 : 0.2
SOFT_MATCH: float = 0.5  # credit of a same-subject, same-family fact with another value (our offline soft match)
REQUIRED_COLUMNS = ("image_id", "captioner", "caption")

Parser = Callable[[str], Iterable[Fact]]
Family = Callable[[Fact], str]


def _check_weights(weights: Sequence[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (len(KINDS),) or not np.all(np.isfinite(w)) or (w < 0).any() or w.sum() <= 0:
        raise ValueError(f"weights must be {len(KINDS)} non-negative numbers for {KINDS} with a positive sum, "
                         f"got {weights!r}")
    return w


def _kind_index(fact: Fact) -> int:
    try:
        return KINDS.index(fact.kind)
    except ValueError:
        raise ValueError(f"fact {fact!r} has kind {fact.kind!r}; expected one of {KINDS}") from None


def _f1(exact: np.ndarray, soft_a: np.ndarray, soft_b: np.ndarray, n_a: np.ndarray, n_b: np.ndarray,
        soft: float) -> np.ndarray:
    """F1 per entry from exact matches, soft matches of each side, and the two sides' sizes (0 where undefined)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(n_a > 0, (exact + soft * soft_a) / np.maximum(n_a, 1), 0.0)
        recall = np.where(n_b > 0, (exact + soft * soft_b) / np.maximum(n_b, 1), 0.0)
        total = precision + recall
        return np.where(total > 0, 2.0 * precision * recall / np.where(total > 0, total, 1.0), 0.0)


def _combine(f1: np.ndarray, present: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean of the per-kind F1s (last axis) over the kinds present; 0 where no kind is present."""
    weight = present * w
    total = weight.sum(axis=-1)
    return np.where(total > 0, (f1 * weight).sum(axis=-1) / np.where(total > 0, total, 1.0), 0.0)


def capture_score(a: Iterable[Fact], b: Iterable[Fact], weights: Sequence[float] = CAPTURE_WEIGHTS,
                  soft: float = SOFT_MATCH, family: Family = fact_family) -> float:
    """CAPTURE-style agreement of two fact sets in [0, 1] (symmetric): F1 per kind with exact and soft matches,
    combined with `weights` (object, attribute, relation) over the kinds either side mentions (module docstring)."""
    w = _check_weights(weights)
    a, b = frozenset(a), frozenset(b)
    stats = np.zeros((5, len(KINDS)))  # exact, soft_a, soft_b, n_a, n_b
    for k, kind in enumerate(KINDS):
        ka = {f for f in a if f.kind == kind}
        kb = {f for f in b if f.kind == kind}
        only_a, only_b = ka - kb, kb - ka
        stats[0, k], stats[3, k], stats[4, k] = len(ka & kb), len(ka), len(kb)
        if kind != "object" and soft > 0 and only_a and only_b:
            keys_a = {(f.subject, family(f)) for f in only_a}
            keys_b = {(f.subject, family(f)) for f in only_b}
            stats[1, k] = sum((f.subject, family(f)) in keys_b for f in only_a)
            stats[2, k] = sum((f.subject, family(f)) in keys_a for f in only_b)
    for fact in a | b:
        _kind_index(fact)
    f1 = _f1(*stats, soft=soft)
    return float(_combine(f1, (stats[3] > 0) | (stats[4] > 0), w))


def _image_keys(captions: pd.DataFrame) -> list[str]:
    """The columns that identify an image: `image_id`, with `modality` when present (ids may repeat across tables)."""
    return [c for c in ("modality", "image_id") if c in captions.columns]


def _check_captions(captions: pd.DataFrame, where: str) -> list[str]:
    missing = [c for c in REQUIRED_COLUMNS if c not in captions.columns]
    if missing:
        raise ValueError(f"{where}: caption table lacks column(s) {missing}; it has {list(captions.columns)}")
    keys = _image_keys(captions)
    duplicated = captions.duplicated([*keys, "captioner"], keep=False)
    if duplicated.any():
        rows = np.flatnonzero(duplicated.to_numpy())[:5].tolist()
        raise ValueError(f"{where}: the same captioner appears twice for one image at rows {rows} "
                         f"(columns {[*keys, 'captioner']})")
    return keys


def captioner_slots(captions: pd.DataFrame, order: Sequence[str] | None = None) -> tuple[list[str], np.ndarray]:
    """The fixed captioner order (given, or the captioners' names sorted) and each row's position in it."""
    names = sorted(captions["captioner"].astype(str).unique()) if order is None else [str(o) for o in order]
    unknown = sorted(set(captions["captioner"].astype(str)) - set(names))
    if unknown:
        raise ValueError(f"captioner order {names} does not name the captioner(s) {unknown}")
    slot = pd.Categorical(captions["captioner"].astype(str), categories=names).codes.astype(np.int64)
    return names, slot


def pairwise_capture(group: np.ndarray, slot: np.ndarray, facts: Sequence[frozenset[Fact]], n_slots: int,
                     weights: Sequence[float] = CAPTURE_WEIGHTS, soft: float = SOFT_MATCH,
                     family: Family = fact_family) -> np.ndarray:
    """CAPTURE scores of every pair of candidates of every image at once: (n_groups, n_slots, n_slots), the same
    values as :func:`capture_score` (a test checks it); unused slots and the diagonal are NaN.

    `group` (int, 0..G-1) and `slot` (int, 0..n_slots-1) give each candidate's image and captioner; `facts` its facts.
    """
    w = _check_weights(weights)
    group = np.asarray(group, dtype=np.int64)
    slot = np.asarray(slot, dtype=np.int64)
    n_groups = int(group.max()) + 1 if group.size else 0
    out = np.full((n_groups, n_slots, n_slots), np.nan)
    if n_groups == 0:
        return out
    # Intern the facts: id, kind and (subject, family) key of each distinct fact.
    fact_id: dict[Fact, int] = {}
    rows_cand, rows_fact = [], []
    for cand, fs in enumerate(facts):
        for fact in fs:
            rows_cand.append(cand)
            rows_fact.append(fact_id.setdefault(fact, len(fact_id)))
    distinct = list(fact_id)
    kind = np.array([_kind_index(f) for f in distinct], dtype=np.int64)
    key_id: dict[tuple[str, str], int] = {}
    fact_key = np.array([-1 if f.kind == "object" else key_id.setdefault((f.subject, family(f)), len(key_id))
                         for f in distinct], dtype=np.int64)
    cand = np.asarray(rows_cand, dtype=np.int64)
    fid = np.asarray(rows_fact, dtype=np.int64)
    # One row per (image, distinct fact), with a membership column per captioner.
    gf, inverse = np.unique(group[cand] * max(len(distinct), 1) + fid, return_inverse=True)
    member = np.zeros((gf.size, n_slots), dtype=bool)
    member[inverse, slot[cand]] = True
    g_row = gf // max(len(distinct), 1)
    f_row = gf % max(len(distinct), 1)
    gk = g_row * len(KINDS) + kind[f_row]  # (image, kind) bucket of each row
    softable = fact_key[f_row] >= 0
    gkey = np.unique(g_row * (len(key_id) + 1) + fact_key[f_row] + 1, return_inverse=True)[1]  # (image, key)
    n_buckets = n_groups * len(KINDS)

    def per_bucket(values: np.ndarray) -> np.ndarray:
        return np.bincount(gk, weights=values.astype(np.float64), minlength=n_buckets).reshape(n_groups, len(KINDS))

    sizes = [per_bucket(member[:, s]) for s in range(n_slots)]
    for i in range(n_slots):
        for j in range(i + 1, n_slots):
            both = member[:, i] & member[:, j]
            only_i = member[:, i] & ~member[:, j]
            only_j = member[:, j] & ~member[:, i]
            key_j = np.bincount(gkey, weights=only_j, minlength=gkey.max() + 1 if gkey.size else 0)
            key_i = np.bincount(gkey, weights=only_i, minlength=gkey.max() + 1 if gkey.size else 0)
            soft_i = only_i & softable & (key_j[gkey] > 0) if gkey.size else only_i
            soft_j = only_j & softable & (key_i[gkey] > 0) if gkey.size else only_j
            n_i, n_j = sizes[i], sizes[j]
            f1 = _f1(per_bucket(both), per_bucket(soft_i), per_bucket(soft_j), n_i, n_j, soft)
            score = _combine(f1, (n_i > 0) | (n_j > 0), w)
            out[:, i, j] = out[:, j, i] = score
    used = np.zeros((n_groups, n_slots), dtype=bool)
    used[group, slot] = True
    out[~(used[:, :, None] & used[:, None, :])] = np.nan
    return out


def parse_all(captions: pd.Series, parse: Parser = parse_caption) -> list[frozenset[Fact]]:
    """The facts of every caption, each distinct caption parsed once."""
    texts = captions.fillna("").astype(str)
    cache = {text: frozenset(parse(text)) for text in pd.unique(texts)}
    return [cache[text] for text in texts]


def consensus_scores(captions: pd.DataFrame, parse: Parser = parse_caption, weights: Sequence[float] = CAPTURE_WEIGHTS,
                     soft: float = SOFT_MATCH, order: Sequence[str] | None = None,
                     family: Family = fact_family) -> pd.DataFrame:
    """Every candidate with its mean CAPTURE score to the other candidates of its image (`consensus_score`; NaN for an
    image with one candidate), its number of facts and `n_candidates`; sorted by image and the captioner order."""
    keys = _check_captions(captions, "consensus_scores")
    names, slot = captioner_slots(captions, order)
    table = captions.reset_index(drop=True).assign(_slot=slot)
    table = table.sort_values([*keys, "_slot"], kind="stable").reset_index(drop=True)
    group = table.groupby(keys, sort=False).ngroup().to_numpy()
    facts = parse_all(table["caption"], parse)
    slot_sorted = table["_slot"].to_numpy()
    pair = pairwise_capture(group, slot_sorted, facts, len(names), weights, soft, family)
    n_cand = np.bincount(group, minlength=pair.shape[0])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(pair, axis=2) / (n_cand[:, None] - 1)
    table["consensus_score"] = np.where(n_cand[group] > 1, mean[group, slot_sorted], np.nan)
    table["n_facts"] = [len(f) for f in facts]
    table["n_candidates"] = n_cand[group]
    return table.drop(columns="_slot")


def select_consensus(captions: pd.DataFrame, parse: Parser = parse_caption, weights: Sequence[float] = CAPTURE_WEIGHTS,
                     soft: float = SOFT_MATCH, order: Sequence[str] | None = None,
                     family: Family = fact_family) -> pd.DataFrame:
    """One row per image: the candidate with the highest mean CAPTURE score to the others (UrbanLN's consensus
    selection), with that score. Ties (equal within 1e-12) go to the captioner first in `order` (default: the
    captioners' names sorted), so the choice never depends on the table's row order."""
    scored = consensus_scores(captions, parse, weights, soft, order, family)
    keys = _image_keys(scored)
    score = scored["consensus_score"].fillna(-np.inf)
    best = score.groupby([scored[k] for k in keys], sort=False).transform("max")
    winner = scored[(score >= best - 1e-12).to_numpy()]
    return winner.drop_duplicates(keys, keep="first").reset_index(drop=True)


def select_random(captions: pd.DataFrame, seed: int, order: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image: a captioner drawn uniformly from the image's candidates with `seed` (the "without
    consensus" ablation); the draw depends only on the seed and the candidates, not on the table's row order."""
    keys = _check_captions(captions, "select_random")
    _, slot = captioner_slots(captions, order)
    table = captions.reset_index(drop=True).assign(_slot=slot)
    table = table.sort_values([*keys, "_slot"], kind="stable").reset_index(drop=True)
    group = table.groupby(keys, sort=False).ngroup().to_numpy()
    counts = np.bincount(group)
    first = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pick = np.random.default_rng(seed).integers(0, counts)
    chosen = table.iloc[first + pick].drop(columns="_slot").reset_index(drop=True)
    return chosen.assign(n_candidates=counts)
