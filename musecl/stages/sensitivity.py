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

Only what the city has is run (:func:`plan`): an encoder whose modality the city lacks, or whose main-run table its
stage skipped (musecl/embeddings.py `write_skipped`), is left out, and MuseCL too when any of its inputs is; each with
its reason, which the notebook states.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from musecl.config import deep_merge
from musecl.contract import MODALITIES
from musecl.methods import City, FusedRegions, PoiText, TripletEncoder

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


MAIN_TABLES = {"RS": "rs", "SV": "sv", "MuseCL": "musecl"}  # sensitivity method -> its main-run embedding table


def plan(params: dict[str, Any], bundle) -> tuple[list[str], dict[str, str]]:
    """The methods this city's sensitivity runs (of MuseCL, RS, SV) and {method: why not} for the others: the city
    lacks the encoder's images, or the main run skipped the method's table (MuseCL also needs RS and SV)."""
    from musecl.config import embeddings_dir
    from musecl.embeddings import skipped_reason

    skipped: dict[str, str] = {}
    for method, modality in (("RS", "rs"), ("SV", "sv")):
        if not bundle.has_modality(modality):
            skipped[method] = f"the city has no {modality} images"
    for method, table in MAIN_TABLES.items():
        reason = skipped_reason(embeddings_dir(params) / f"{table}.parquet")
        if reason is not None and method not in skipped:
            skipped[method] = reason
    if "MuseCL" not in skipped and {"RS", "SV"} & set(skipped):
        skipped["MuseCL"] = "it fuses RS and SV, and " + " and ".join(m for m in ("RS", "SV") if m in skipped) + \
            " was not run"
    return [m for m in ("MuseCL", "RS", "SV") if m not in skipped], skipped


def text_vectors(city: City, dim: int) -> pd.DataFrame:
    """Region text vectors of dimension `dim`: the `poi_text` stage's table when it has that size, else Word2Vec
    retrained with the stage's settings and that size."""
    stored = city.embeddings_path("poi_text")
    if stored.is_file():
        table = city.embeddings("poi_text")
        if table.shape[1] == dim:
            return table
    return PoiText.from_params(city.params, vector_size=dim).fit_transform(city)


def run_setting(params: dict[str, Any], setting: Setting, bundle, targets: pd.DataFrame, folds, settings,
                progress: bool = True, methods: tuple[str, ...] = ("MuseCL", "RS", "SV")
                ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Train, fuse and evaluate one setting. Returns (results rows for `methods` of MuseCL, RS and SV; a summary dict).

    Checkpoints go to `<paths.models>/sensitivity/<setting>/<modality>/`, so an interrupted stage resumes training.
    """
    from musecl.evaluation import evaluate

    p = setting_params(params, setting)
    city = City(p, bundle, progress=progress)
    tables, summary = {}, {"setting": setting.name, "embedding_dim": setting.embedding_dim, "margin": setting.margin}
    for m in MODALITIES:
        if m.upper() not in methods and "MuseCL" not in methods:
            continue
        encoder = TripletEncoder(m, m, p["encoders"][m], city.models / "sensitivity" / setting.name / m).fit(city)
        tables[m] = encoder.transform(city)
        h = encoder.result.history.set_index("epoch")
        summary[f"{m}_val_accuracy"] = float(h.loc[encoder.result.best_epoch, "val_accuracy"])
        summary[f"{m}_seconds"] = float(h.loc[h.index > 0, "seconds"].sum())
    features = {m.upper(): tables[m] for m in MODALITIES if m.upper() in methods}
    if "MuseCL" in methods:
        # the fusion reads these in memory; the text table is the stored one only when its size matches
        fusion_city = City(p, bundle, progress=False, tables={"rs": tables["rs"], "sv": tables["sv"],
                                                              "poi_text": text_vectors(city, setting.embedding_dim)})
        fused = FusedRegions("MuseCL", p["fusion"]).fit(fusion_city)
        summary["alpha_sv_mean"] = float(fused.attention["alpha_sv"].mean())
        features = {"MuseCL": fused.transform(fusion_city), **features}
    if not features:
        return pd.DataFrame(), summary
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


def robust_inputs(params: dict[str, Any], bundle):
    """(targets, folds, settings) of the robust protocol with ridge: the `evaluate` stage's folds (same regions, seed
    and split spec)."""
    from musecl.evaluation import make_folds
    from musecl.evaluation.store import select_indicators

    settings = robust_settings(params)
    targets = select_indicators(bundle.indicators(transformed=True), params["evaluation"]["indicators"], source=str(bundle.root))
    targets = targets.dropna()
    region_ids = sorted(targets.index.astype(str))
    return targets, make_folds(region_ids, settings.split_specs, settings.seed, bundle.h3_resolution), settings


def run_grid(params: dict[str, Any], bundle, progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every setting of the grid; returns (the sensitivity table in musecl.evaluation.figures' format, a per-setting
    summary). The folds are the `evaluate` stage's (same regions, seed and spec), so the base point's numbers can be
    compared with the main results for the effect of the shorter budget."""
    targets, folds, settings = robust_inputs(params, bundle)
    methods, _ = plan(params, bundle)
    per_setting, summaries = {}, []
    todo = settings_to_run(params) if methods else []  # nothing to vary without an encoder (the notebook says why)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(todo), desc="sensitivity settings", unit="setting")
    for setting in todo:
        per_setting[setting], summary = run_setting(params, setting, bundle, targets, folds, settings, progress=False,
                                                    methods=tuple(methods))
        summaries.append(summary)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    parts = []
    for parameter, value, setting in (grid(params) if methods else []):
        part = per_setting[setting].copy()
        part.insert(0, "value", value)
        part.insert(0, "parameter", parameter)
        parts.append(part)
    if not parts:
        return pd.DataFrame(columns=["parameter", "value", "method", "indicator", "r2"]), pd.DataFrame()
    return pd.concat(parts, ignore_index=True), pd.DataFrame(summaries).set_index("setting")


def r2_table(table: pd.DataFrame) -> pd.DataFrame:
    """The sensitivity table as "mean ± std" R² over the folds: rows (parameter, value, method), columns indicators."""
    summary = (table.groupby(["parameter", "value", "method", "indicator"], sort=False)["r2"].agg(["mean", "std"])
               .round(3).reset_index())
    wide = summary.assign(r2=summary["mean"].map("{:.3f}".format) + " ± " + summary["std"].map("{:.3f}".format))
    return wide.pivot_table(index=["parameter", "value", "method"], columns="indicator", values="r2", aggfunc="first",
                            sort=False)


def grid_table(params: dict[str, Any]) -> pd.DataFrame:
    """The grid to run: one row per (parameter, value) with the setting it runs."""
    return pd.DataFrame([{"parameter": p, "value": v, "setting": s.name} for p, v, s in grid(params)])
