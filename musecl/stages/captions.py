"""The `captions` stage (notebooks/04b_captions.ipynb; params.yaml `captions`): the caption candidates of every image,
how long they are against CLIP's 77-token limit, how often each captioner is wrong (on the synthetic city, where the
truth is known), and UrbanLN's consensus selection among the candidates (plus the random-captioner ablation).

Candidates come from the bundle's `captions.parquet` (the synthetic city's simulated captioners, or a real city's
captions imported with the validator), from a caption file (`captions.file`, any captioner; `docs/data_format.md`), or
from the built-in open-data captioner (`captions.source: open_data`, a region description from POIs). The selected
captions go to `<paths.work>/captions/`, where the `imagetext` stage reads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.contract import MODALITIES

SOURCES = ("auto", "bundle", "file", "open_data")
CAPTIONS_KEYS = ("source", "file", "consensus", "examples", "urbanclip_captioner")
CLIP_CONTEXT = 77  # CLIP's text context, start and end tokens included


def captions_settings(params: Mapping[str, Any]) -> dict[str, Any]:
    """params.yaml `captions`, checked (unknown keys refused, naming them)."""
    cfg = dict(params.get("captions") or {})
    unknown = sorted(set(cfg) - set(CAPTIONS_KEYS))
    if unknown:
        raise ValueError(f"params.yaml captions: unknown setting(s) {unknown}; known: {sorted(CAPTIONS_KEYS)}")
    source = cfg.get("source", "auto")
    if source not in SOURCES:
        raise ValueError(f"params.yaml captions.source: expected one of {SOURCES}, got {source!r}")
    if source == "file" and not cfg.get("file"):
        raise ValueError("params.yaml captions.source is 'file' but captions.file names no file")
    return cfg


def work_dir(params: Mapping[str, Any]) -> Path:
    return Path(params["paths"]["work"]) / "captions"


def load_candidates(params: Mapping[str, Any], bundle) -> pd.DataFrame:
    """Every caption candidate: image_id, modality, captioner, caption (and the synthetic truth rates when known)."""
    cfg = captions_settings(params)
    source = caption_source(params, bundle)
    if source == "bundle":
        if not bundle.has("captions"):
            raise FileNotFoundError(
                f"{bundle.path('captions.parquet')}: the bundle has no captions table; set captions.source to "
                "'file' (captions.file: a caption file made with any captioner, docs/data_format.md) or 'open_data' "
                "(a region description from the bundle's POIs)")
        table = bundle.read("captions")
    elif source == "file":
        from musecl.opendata.captions import read_caption_file

        images = {m: _image_table(bundle, m) for m in MODALITIES if bundle.has_modality(m)}  # the city's image tables
        table = read_caption_file(cfg["file"], images)
    else:
        from musecl.opendata.captions import describe_regions

        table = describe_regions(bundle, include_poi_count=False)  # the POI count is an indicator (NP)
    table = table.copy()
    for column in ("image_id", "modality", "captioner", "caption"):
        table[column] = table[column].astype(str)
    return table.sort_values(["modality", "image_id", "captioner"], kind="stable").reset_index(drop=True)


def caption_source(params: Mapping[str, Any], bundle) -> str:
    """Where the captions come from: `captions.source`, with `auto` = the bundle's captions table when it has one,
    else the open-data region description."""
    source = captions_settings(params).get("source", "auto")
    if source == "auto":
        return "bundle" if bundle.has("captions") else "open_data"
    return source


def _image_table(bundle, modality: str) -> pd.DataFrame:
    return bundle.remote_sensing() if modality == "rs" else bundle.street_view()


def scene_truth(bundle) -> pd.DataFrame | None:
    """The synthetic city's true facts per image (None for a real city)."""
    return bundle.read("scene_facts") if bundle.has("scene_facts") else None


def token_lengths(captions: pd.Series) -> np.ndarray:
    """CLIP BPE tokens of each caption, start and end tokens included (open_clip's tokenizer, offline)."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    unique = pd.unique(captions)
    lengths = {text: len(tokenizer.encode(text)) + 2 for text in unique}
    return captions.map(lengths).to_numpy(dtype=np.int64)


def captioner_summary(candidates: pd.DataFrame) -> pd.DataFrame:
    """Per captioner and modality: captions, mean words and tokens, share beyond 77 tokens, truth rates if known."""
    frame = candidates.assign(tokens=token_lengths(candidates["caption"]),
                              words=candidates["caption"].str.split().str.len())
    agg = {"captions": ("caption", "size"), "mean_words": ("words", "mean"), "mean_tokens": ("tokens", "mean"),
           "max_tokens": ("tokens", "max"),
           "over_77_tokens": ("tokens", lambda t: float((t > CLIP_CONTEXT).mean()))}
    for rate in ("hallucination_rate", "omission_rate"):
        if rate in frame:
            agg[rate] = (rate, "mean")
    return frame.groupby(["modality", "captioner"], sort=True).agg(**agg).reset_index()


def select(params: Mapping[str, Any], candidates: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """UrbanLN's consensus selection (one candidate per image, the highest mean CAPTURE score to the others) and the
    ablation's random captioner per image (seeded)."""
    from musecl.imagetext.consensus import select_consensus, select_random

    cfg = captions_settings(params).get("consensus") or {}
    unknown = sorted(set(cfg) - {"weights", "soft"})
    if unknown:
        raise ValueError(f"params.yaml captions.consensus: unknown setting(s) {unknown}; known: ['soft', 'weights']")
    kwargs = {k: (tuple(v) if k == "weights" else float(v)) for k, v in cfg.items()}
    out = {"consensus": select_consensus(candidates, **kwargs),
           "random": select_random(candidates, seed=int(params["seed"]))}
    return {name: frame.sort_values(["modality", "image_id"], kind="stable").reset_index(drop=True)
            for name, frame in out.items()}


def quality_table(candidates: pd.DataFrame, selected: Mapping[str, pd.DataFrame], truth: pd.DataFrame | None,
                  extra: Mapping[str, pd.DataFrame] | None = None) -> pd.DataFrame | None:
    """Hallucination and omission rates of the candidates per captioner, of the consensus and random selections (and
    of further steps, e.g. the refined captions), measured against the synthetic truth; None without a truth."""
    if truth is None:
        return None
    from musecl.imagetext.quality import hallucination_table

    steps = {f"captioner: {name}": frame for name, frame in candidates.groupby("captioner", sort=True)}
    steps["consensus"] = selected["consensus"]
    steps["random captioner"] = selected["random"]
    steps.update(extra or {})
    return hallucination_table(steps, truth).reset_index()


def marked_examples(candidates: pd.DataFrame, truth: pd.DataFrame | None, n: int, seed: int) -> str:
    """Markdown: every candidate caption of `n` images (drawn with the seed), each phrase that states a false fact
    struck through, with the facts it got wrong; the true facts listed first when known."""
    from musecl.data.captions import facts_from_text, parse_caption, phrases

    rng = np.random.default_rng([int(seed), 8])
    images = candidates[["modality", "image_id"]].drop_duplicates().sort_values(["modality", "image_id"])
    chosen = []
    for modality, group in images.groupby("modality", sort=True):
        take = rng.choice(len(group), size=min(n, len(group)), replace=False)
        chosen.extend(group.iloc[np.sort(take)].itertuples(index=False))
    truth_by_image = ({} if truth is None else
                      {(m, i): facts_from_text(f) for m, i, f in truth[["modality", "image_id", "facts"]].itertuples(index=False)})
    lines = []
    for modality, image_id in chosen:
        lines.append(f"**{modality} image `{image_id}`**")
        true_facts = truth_by_image.get((modality, image_id))
        if true_facts is not None:
            lines.append(f"*truth:* {', '.join(_fact_text(f) for f in sorted(true_facts))}")
        rows = candidates[(candidates["modality"] == modality) & (candidates["image_id"] == image_id)]
        for captioner, caption in rows[["captioner", "caption"]].itertuples(index=False):
            parts = []
            for phrase in phrases(caption):
                wrong = [] if true_facts is None else sorted(parse_caption(phrase) - true_facts)
                parts.append(f"~~{phrase}~~ *(false: {', '.join(_fact_text(f) for f in wrong)})*" if wrong else phrase)
            lines.append(f"- *{captioner}*: " + " ".join(parts))
        lines.append("")
    return "\n".join(lines)


def _fact_text(fact) -> str:
    return fact.subject if not fact.value else f"{fact.subject}={fact.value}"


def write_selections(selected: Mapping[str, pd.DataFrame], params: Mapping[str, Any]) -> list[Path]:
    from musecl.storage import write_parquet

    paths = []
    for name, frame in selected.items():
        path = work_dir(params) / f"{name}.parquet"
        write_parquet(frame, path)
        paths.append(path)
    return paths


def read_selection(params: Mapping[str, Any], name: str) -> pd.DataFrame:
    path = work_dir(params) / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {name} captions; run the `captions` stage first (dvc repro captions)")
    return pd.read_parquet(path)


def lengths_table(candidates: pd.DataFrame) -> pd.DataFrame:
    """modality, captioner, tokens (CLIP tokens per caption), for the length figure."""
    return candidates[["modality", "captioner"]].assign(tokens=token_lengths(candidates["caption"]))


def write_report(params: Mapping[str, Any], candidates: pd.DataFrame, summary: pd.DataFrame,
                 quality: pd.DataFrame | None, selected: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """Figures and tables under <paths.reports>/04b_captions/, the stage's metrics in <paths.reports>/captions.json."""
    import matplotlib.pyplot as plt

    from musecl.imagetext.plots import length_histogram, quality_bars
    from musecl.plots import save_figure, write_table
    from musecl.storage import write_json

    reports = Path(params["paths"]["reports"])
    out = reports / "04b_captions"
    fig = length_histogram(lengths_table(candidates))
    save_figure(fig, out / "caption_lengths.png")
    plt.close(fig)
    write_table(summary, out / "captioners")
    metrics: dict[str, Any] = {
        "captions": int(len(candidates)), "images": int(candidates[["modality", "image_id"]].drop_duplicates().shape[0]),
        "captioners": sorted(candidates["captioner"].unique().tolist()),
        "share_over_77_tokens": float((token_lengths(candidates["caption"]) > CLIP_CONTEXT).mean()),
        "mean_consensus_score": (None if selected["consensus"]["consensus_score"].isna().all()
                                 else float(selected["consensus"]["consensus_score"].mean())),
    }
    if quality is not None:
        fig = quality_bars(quality)
        save_figure(fig, out / "caption_quality.png")
        plt.close(fig)
        write_table(quality, out / "caption_quality")
        metrics["hallucination_rate"] = {str(s): round(float(v), 4) for s, v in zip(quality["step"], quality["hallucination_rate"])}
    write_json(metrics, reports / "captions.json")
    return metrics


def findings(summary: pd.DataFrame, quality: pd.DataFrame | None) -> str:
    """'What this shows', written from the tables just computed."""
    lines = []
    longest = summary.sort_values("mean_tokens").iloc[-1]
    over = summary[summary["over_77_tokens"] > 0]
    lines.append(f"- Captions run from {summary['mean_tokens'].min():.0f} to {summary['mean_tokens'].max():.0f} CLIP "
                 f"tokens on average per captioner; {len(over)} of {len(summary)} captioner/modality pairs have "
                 f"captions beyond the 77-token context (most: {longest['captioner']} on {longest['modality']}, "
                 f"{longest['over_77_tokens']:.0%} of its captions), which CLIP would truncate.")
    if quality is not None:
        per = quality[quality["step"].str.startswith("captioner")]
        best = per.sort_values("hallucination_rate").iloc[0]
        worst = per.sort_values("hallucination_rate").iloc[-1]
        rate = dict(zip(quality["step"], quality["hallucination_rate"]))
        lines.append(f"- Hallucination rates range from {best['hallucination_rate']:.1%} ({best['step'].split(': ')[-1]}) "
                     f"to {worst['hallucination_rate']:.1%} ({worst['step'].split(': ')[-1]}) of stated facts.")
        verdict = "lower" if rate["consensus"] < rate["random captioner"] else "not lower"
        lines.append(f"- Consensus selection gives {rate['consensus']:.1%} hallucinated facts against "
                     f"{rate['random captioner']:.1%} for a random captioner per image: {verdict}; the mean over the "
                     f"captioners is {per['hallucination_rate'].mean():.1%}.")
    else:
        lines.append("- This city has no ground truth for its images, so hallucination rates cannot be measured.")
    return "\n".join(lines)


def checks(candidates: pd.DataFrame, selected: Mapping[str, pd.DataFrame]) -> pd.Series:
    images = candidates[["modality", "image_id"]].drop_duplicates()
    out = {}
    for name, frame in selected.items():
        out[f"{name}: one caption per image"] = bool(len(frame) == len(images)
                                                      and not frame.duplicated(["modality", "image_id"]).any())
        out[f"{name}: chosen from the candidates"] = bool(
            frame.merge(candidates, on=["modality", "image_id", "captioner", "caption"]).shape[0] == len(frame))
    scores = selected["consensus"]["consensus_score"]
    single = selected["consensus"]["n_candidates"] == 1 if "n_candidates" in selected["consensus"] else False
    out["consensus scores in [0, 1] (NaN: one candidate)"] = bool((scores.between(0, 1) | (scores.isna() & single)).all())
    return pd.Series(out)
