"""Caption quality against the synthetic city's truth: how many claimed facts are false (hallucination) and how many
true facts are missing (omission), per step of the caption pipeline (each captioner, consensus, random, refined).

The synthetic city writes the true facts of every image (`scene_facts.parquet`: image_id, modality, facts); a caption
is parsed with :func:`musecl.data.captions.parse_caption` and compared with them by
:func:`musecl.data.captions.truth_rates`. This is how the notebook reports "hallucination before and after consensus
and refinement"; real cities have no such truth.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import numpy as np
import pandas as pd

from musecl.data import captions as lexicon
from musecl.data.captions import Fact


def per_captioner(captions: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The raw candidates split into one step per captioner ("per captioner: <name>"), in the captioners' name order."""
    if "captioner" not in captions.columns:
        raise ValueError(f"per_captioner: caption table lacks column 'captioner'; it has {list(captions.columns)}")
    return {f"per captioner: {name}": frame for name, frame in captions.groupby("captioner", sort=True)}


def _truth_lookup(scene_facts: pd.DataFrame, keys: list[str]) -> pd.Series:
    missing = [c for c in ("image_id", "facts", *keys) if c not in scene_facts.columns]
    if missing:
        raise ValueError(f"scene_facts lacks column(s) {missing}; it has {list(scene_facts.columns)}")
    if scene_facts.duplicated(keys).any():
        row = int(np.flatnonzero(scene_facts.duplicated(keys).to_numpy())[0])
        raise ValueError(f"scene_facts has image {scene_facts.iloc[row][keys].tolist()} twice (row {row})")
    truth = [lexicon.facts_from_text(str(t)) for t in scene_facts["facts"].fillna("")]
    return pd.Series(truth, index=pd.MultiIndex.from_frame(scene_facts[keys]) if len(keys) > 1
                     else pd.Index(scene_facts[keys[0]]))


def caption_truth_rates(captions: pd.DataFrame, scene_facts: pd.DataFrame, step: str = "captions",
                        parse: Callable[[str], Iterable[Fact]] | None = None) -> pd.DataFrame:
    """Per caption: its number of facts, hallucination rate and omission rate against the image's true facts."""
    if "caption" not in captions.columns or "image_id" not in captions.columns:
        raise ValueError(f"{step}: caption table needs columns 'image_id' and 'caption'; "
                         f"it has {list(captions.columns)}")
    parse = parse or lexicon.parse_caption
    keys = ["modality", "image_id"] if "modality" in captions.columns and "modality" in scene_facts.columns \
        else ["image_id"]
    truth = _truth_lookup(scene_facts, keys)
    index = pd.MultiIndex.from_frame(captions[keys]) if len(keys) > 1 else pd.Index(captions["image_id"])
    known = index.isin(truth.index)
    if not known.all():
        unknown = captions.loc[~known, keys].head(5).to_numpy().tolist()
        raise ValueError(f"{step}: {int((~known).sum())} caption(s) have no true facts in scene_facts, e.g. {unknown}")
    texts = captions["caption"].fillna("").astype(str)
    cache = {text: frozenset(parse(text)) for text in pd.unique(texts)}
    claimed = [cache[t] for t in texts]
    rates = np.array([lexicon.truth_rates(c, t) for c, t in zip(claimed, truth.loc[index].tolist())],
                     dtype=np.float64).reshape(-1, 2)
    return pd.DataFrame({"n_facts": [len(c) for c in claimed], "hallucination_rate": rates[:, 0],
                         "omission_rate": rates[:, 1]}, index=captions.index)


def hallucination_table(captions_by_step: Mapping[str, pd.DataFrame], scene_facts: pd.DataFrame,
                        parse: Callable[[str], Iterable[Fact]] | None = None) -> pd.DataFrame:
    """One row per step (in the given order): mean hallucination rate, mean omission rate (each over the captions
    where it is defined), mean facts per caption and number of captions. Build the steps as
    ``{**per_captioner(raw), "consensus": ..., "random captioner": ..., "refined": ...}``."""
    rows = []
    for step, captions in captions_by_step.items():
        rates = caption_truth_rates(captions, scene_facts, step, parse)
        rows.append({
            "step": step,
            "hallucination_rate": float(np.nanmean(rates["hallucination_rate"])) if len(rates)
            and rates["hallucination_rate"].notna().any() else np.nan,
            "omission_rate": float(np.nanmean(rates["omission_rate"])) if len(rates)
            and rates["omission_rate"].notna().any() else np.nan,
            "facts_per_caption": float(rates["n_facts"].mean()) if len(rates) else np.nan,
            "captions": int(len(rates)),
        })
    return pd.DataFrame(rows, columns=["step", "hallucination_rate", "omission_rate", "facts_per_caption",
                                       "captions"]).set_index("step")
