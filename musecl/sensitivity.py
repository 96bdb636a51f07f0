"""Sensitivity of MuseCL to the embedding size d and the triplet margin m (stage `sensitivity`,
notebooks/06b_sensitivity.ipynb; params.yaml `sensitivity`).

One parameter is varied at a time around the configured values (encoders.*.embedding_dim, encoders.*.loss.margin); the
point at the configured values is run once and belongs to both curves. Each setting re-runs MuseCL end to end with that
setting, reusing the pipeline's own parts:

  both encoders (the `pairs` stage's triplets, the shared trainer, the `encoders` stage's image caches)
  -> Word2Vec region text vectors of dimension d (the MSE alignment compares them with the image vectors)
  -> attentive fusion (params.yaml `fusion`)
  -> ridge on the robust protocol's folds (the same folds as the `evaluate` stage: same regions, seed and split spec).

`sensitivity.budget` overrides the encoders' training budget for these runs (on the CPU default a shorter one than the
main runs, so the points compare with each other, not with the main results table).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from musecl.config import deep_merge

MODALITIES = ("rs", "sv")
STAGE = "06b_sensitivity"


@dataclass(frozen=True)
class Setting:
    embedding_dim: int
    margin: float

    @property
    def name(self) -> str:
        return f"d{self.embedding_dim}_m{self.margin:g}"


def base_setting(params: dict[str, Any]) -> Setting:
    """The configured point; both encoders must agree on it (the fusion needs equal dimensions)."""
    rs, sv = params["encoders"]["rs"], params["encoders"]["sv"]
    if rs["embedding_dim"] != sv["embedding_dim"]:
        raise ValueError(f"params.yaml: encoders.rs.embedding_dim ({rs['embedding_dim']}) and encoders.sv.embedding_dim "
                         f"({sv['embedding_dim']}) differ; the fusion needs one dimension")
    margins = {float(rs.get("loss", {}).get("margin", 5.0)), float(sv.get("loss", {}).get("margin", 5.0))}
    if len(margins) != 1:
        raise ValueError(f"params.yaml: encoders.rs.loss.margin and encoders.sv.loss.margin differ ({sorted(margins)}); "
                         "the sensitivity varies one shared margin")
    return Setting(int(rs["embedding_dim"]), margins.pop())


def grid(params: dict[str, Any]) -> list[tuple[str, float, Setting]]:
    """(parameter, value, setting) for every point of both curves; the base setting appears under both parameters."""
    cfg = params.get("sensitivity")
    if not isinstance(cfg, dict):
        raise KeyError("params.yaml has no section 'sensitivity'")
    base = base_setting(params)
    points = [("embedding_dim", float(d), Setting(int(d), base.margin)) for d in cfg.get("embedding_dim") or []]
    points += [("margin", float(m), Setting(base.embedding_dim, float(m))) for m in cfg.get("margin") or []]
    for parameter, value, _ in points:
        if value <= 0:
            raise ValueError(f"params.yaml: sensitivity.{parameter} values must be > 0, got {value}")
    return points


def settings_to_run(params: dict[str, Any]) -> list[Setting]:
    """The distinct settings of the grid, in grid order."""
    return list(dict.fromkeys(s for _, _, s in grid(params)))


def setting_params(params: dict[str, Any], setting: Setting) -> dict[str, Any]:
    """params with the setting and `sensitivity.budget` merged into both encoders and Word2Vec's vector size."""
    budget = params["sensitivity"].get("budget") or {}
    encoders = {m: deep_merge(budget.get(m) or {}, {"embedding_dim": setting.embedding_dim,
                                                     "loss": {"margin": setting.margin}}) for m in MODALITIES}
    return deep_merge(params, {"encoders": encoders, "poi_text": {"word2vec": {"vector_size": setting.embedding_dim}}})


def _text_vectors(params: dict[str, Any], bundle, dim: int) -> pd.DataFrame:
    """Region text vectors of dimension `dim`: the `poi_text` stage's table when it has that size, else Word2Vec
    retrained with the stage's settings and that size."""
    from musecl import text
    from musecl.embeddings import read_embeddings

    cfg = params["poi_text"]
    stored = Path(params["paths"]["work"]) / "embeddings" / "poi_text.parquet"
    if stored.is_file():
        table = read_embeddings(stored)
        if table.shape[1] == dim:
            return table
    pois = bundle.pois()
    tokens = text.tokenize_pois(pois, split_han=cfg["tokenizer"]["split_han"], source=str(bundle.path("pois.parquet")))
    config = text.Word2VecConfig.from_params({**cfg["word2vec"], "vector_size": dim})
    run = text.train_word2vec(text.build_sentences(tokens, config.sentences), config, seed=int(params["seed"]))
    regions = bundle.regions()["region_id"]
    poi_regions = text.assign_pois_to_regions(pois, regions, bundle.h3_resolution)
    return text.region_text_embeddings(tokens, poi_regions, run.wv, regions, source=cfg["region_tokens"]).table


def run_setting(params: dict[str, Any], setting: Setting, bundle, targets: pd.DataFrame, folds, settings,
                progress: bool = True) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train, fuse and evaluate one setting. Returns (results rows for MuseCL, RS and SV; a summary dict).

    Checkpoints go to `<paths.models>/sensitivity/<setting>/<modality>/`, so an interrupted stage resumes training.
    """
    from musecl.encoders import train_encoder
    from musecl.encoders.embed import region_embeddings
    from musecl.encoders.stage import config_from_spec
    from musecl.evaluation import evaluate
    from musecl.fusion import FusionConfig, fuse_regions
    from musecl.pairs import read_triplets
    from musecl.baselines import open_cache

    p = setting_params(params, setting)
    runtime = p["encoders"].get("runtime", {})
    regions = bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    pairs_dir = Path(p["paths"]["work"]) / "pairs"
    tables, summary = {}, {"setting": setting.name, "embedding_dim": setting.embedding_dim, "margin": setting.margin}
    for m in MODALITIES:
        cache = open_cache(p, m)
        config = config_from_spec(p["encoders"][m], p, None, progress)
        result = train_encoder(cache, read_triplets(pairs_dir, m, "train"), read_triplets(pairs_dir, m, "val"), config,
                               Path(p["paths"]["models"]) / "sensitivity" / setting.name / m)
        tables[m], _ = region_embeddings(result.model, cache, regions, missing=p["encoders"].get("missing_regions", "neighbours"),
                                         batch_size=int(runtime.get("eval_batch_size", 256)),
                                         device=runtime.get("device", "auto"), precision=runtime.get("precision", "auto"))
        h = result.history.set_index("epoch")
        summary[f"{m}_val_accuracy"] = float(h.loc[result.best_epoch, "val_accuracy"])
        summary[f"{m}_seconds"] = float(h.loc[h.index > 0, "seconds"].sum())
    text = _text_vectors(p, bundle, setting.embedding_dim)
    fused = fuse_regions(tables["rs"], tables["sv"], text, FusionConfig.from_params(p["fusion"], int(p["seed"])))
    summary["alpha_sv_mean"] = float(fused.attention["alpha_sv"].mean())
    features = {"MuseCL": fused.embeddings, "RS": tables["rs"], "SV": tables["sv"]}
    results = evaluate(features, targets, folds, settings, progress=False).results
    return results, summary


def robust_settings(params: dict[str, Any]):
    """The evaluation settings restricted to the robust protocol and ridge (`evaluation.figures.robust`)."""
    from dataclasses import replace

    from musecl.evaluation import EvaluationSettings

    robust = params["evaluation"]["figures"]["robust"]
    settings = EvaluationSettings.from_params(params)
    protocols = tuple(replace(p, regressors=(robust["regressor"],)) for p in settings.protocols if p.name == robust["protocol"])
    if not protocols:
        raise ValueError(f"params.yaml: evaluation.figures.robust.protocol {robust['protocol']!r} is not in evaluation.protocols")
    return replace(settings, protocols=protocols, n_jobs=1)


def run_grid(params: dict[str, Any], bundle, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every setting of the grid; returns (the sensitivity table in musecl.evaluation.figures' format, a per-setting
    summary). The folds are the `evaluate` stage's (same regions, seed and spec), so the base point's numbers can be
    compared with the main results for the effect of the shorter budget."""
    from musecl.evaluation import make_folds
    from musecl.evaluation.store import select_indicators

    settings = robust_settings(params)
    targets = select_indicators(bundle.indicators(transformed=True), params["evaluation"]["indicators"], source=str(bundle.root))
    targets = targets.dropna()
    region_ids = sorted(targets.index.astype(str))
    folds = make_folds(region_ids, settings.split_specs, settings.seed, bundle.h3_resolution)
    per_setting, summaries = {}, []
    todo = settings_to_run(params)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc="sensitivity settings", unit="setting")
    for setting in todo:
        per_setting[setting], summary = run_setting(params, setting, bundle, targets, folds, settings, progress=False)
        summaries.append(summary)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    parts = []
    for parameter, value, setting in grid(params):
        part = per_setting[setting].copy()
        part.insert(0, "value", value)
        part.insert(0, "parameter", parameter)
        parts.append(part)
    return pd.concat(parts, ignore_index=True), pd.DataFrame(summaries).set_index("setting")
