"""The `encoders` stage (notebooks/03_encoder_training.ipynb): params.yaml -> image cache -> trained encoder -> region
embeddings, for each modality (`rs` remote sensing, `sv` street view).

Paths, per modality m:
  <paths.work>/image_cache/<m>/          decoded uint8 images (DVC-cached)
  <paths.work>/pairs/<m>_{train,val}.parquet   triplets from the `pairs` stage
  <paths.models>/encoders/<m>/           best.pt (the encoder), last.pt (resume state)
  <paths.work>/embeddings/<m>.parquet    one embedding per region (musecl.embeddings format)
  <paths.reports>/03_encoder_training/<m>/  figures, tables, DVCLive curves;  <paths.reports>/encoders_<m>.json  metrics
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.config import embeddings_dir
from musecl.contract import MODALITY_NAMES
from musecl.methods import City, TripletEncoder, config_from_spec

STAGE = "03_encoder_training"


def stage_paths(params: dict[str, Any], modality: str) -> dict[str, Path]:
    work, models, reports = (Path(params["paths"][k]) for k in ("work", "models", "reports"))
    return {
        "cache": work / "image_cache" / modality,
        "pairs": work / "pairs",
        "checkpoints": models / "encoders" / modality,
        "embeddings": embeddings_dir(params) / f"{modality}.parquet",
        "reports": reports / STAGE / modality,
        "metrics": reports / f"encoders_{modality}.json",
    }


def skip_missing(params: dict[str, Any], bundle, modalities: list[str]) -> dict[str, str]:
    """The modalities of `modalities` the city has no images of: each gets its declared outputs written as skipped
    (`musecl.stages.skips`: embeddings, cache, checkpoints, reports folder, metrics), and is announced; returns
    {modality: reason}."""
    from musecl.data.schema import MODALITY_NAMES as NAMES
    from musecl.data.schema import modality_files
    from musecl.stages import skips

    skipped = {}
    for m in modalities:
        if bundle.has_modality(m):
            continue
        reason = f"the city has no {NAMES[m]} ({modality_files(m)} absent)"
        paths = stage_paths(params, m)
        skips.write_skipped_outputs([paths[k] for k in ("embeddings", "cache", "checkpoints", "reports", "metrics")],
                                    reason)
        skipped[m] = reason
    skips.announce({f"encoder {m}": r for m, r in skipped.items()}, STAGE)
    return skipped


def skipped_outputs(params: dict[str, Any], skipped: dict[str, str]) -> dict[str, tuple[list[Path], str]]:
    """The outputs `skip_missing` wrote, for `musecl.stages.skips.check_skipped`."""
    keys = ("embeddings", "cache", "checkpoints", "reports", "metrics")
    return {f"encoder {m}": ([stage_paths(params, m)[k] for k in keys], r) for m, r in skipped.items()}


def modality_settings(params: dict[str, Any], modality: str) -> dict[str, Any]:
    cfg = params["encoders"]
    if modality not in cfg:
        raise KeyError(f"params.yaml: encoders has no section '{modality}' (modalities: {sorted(MODALITY_NAMES)})")
    return dict(cfg[modality])


def train_config(params: dict[str, Any], modality: str, progress: bool = True):
    """The trainer settings of one modality: `encoders.<modality>` + `encoders.runtime` + the global seed."""
    log_dir = stage_paths(params, modality)["reports"] / "dvclive"
    return config_from_spec(modality_settings(params, modality), params, log_dir, progress)


def build_caches(params: dict[str, Any], bundle, modalities: list[str], progress: bool = True) -> tuple[dict, pd.DataFrame]:
    """Decode each modality's images once into `<work>/image_cache/<modality>` (reused when already up to date);
    returns the caches and a table of what they hold."""
    from musecl.encoders.image_cache import image_table, open_or_build_cache

    workers = int(params["encoders"].get("runtime", {}).get("cache_workers", 2))
    caches, rows = {}, {}
    for modality in modalities:
        size = int(modality_settings(params, modality)["image_size"])
        cache, reused = open_or_build_cache(image_table(bundle, modality), bundle.root, stage_paths(params, modality)["cache"],
                                            size, modality, workers, progress)
        caches[modality] = cache
        rows[modality] = {
            "images": len(cache),
            "regions with images": cache.index["region_id"].nunique(),
            "cached size (px)": "x".join(map(str, cache.image_shape)),
            "cache MB": round(cache.images.nbytes / 2**20, 1),
            "reused": reused,
        }
    return caches, pd.DataFrame(rows).T


def encoder_method(params: dict[str, Any], modality: str) -> TripletEncoder:
    """MuseCL's encoder of `modality` as a method: the `pairs` stage's triplets, `encoders.<modality>` settings."""
    paths = stage_paths(params, modality)
    return TripletEncoder(modality, modality, modality_settings(params, modality), paths["checkpoints"],
                          log_dir=paths["reports"] / "dvclive")


def train_encoders(city: City, modalities: list[str]) -> dict[str, TripletEncoder]:
    """Train each modality's encoder (an interrupted run resumes from its last.pt)."""
    return {m: encoder_method(city.params, m).fit(city) for m in modalities}


def embed_encoders(city: City, encoders: dict[str, TripletEncoder]) -> dict[str, tuple[pd.DataFrame, pd.Series]]:
    """Region embeddings of every trained encoder, written to `<work>/embeddings/<m>.parquet`; (table, images per
    region) per modality."""
    out = {}
    for modality, method in encoders.items():
        table = method.transform(city)
        method.write(table, city)
        out[modality] = (table, method.counts)
    return out


def embedding_summary(embedded: dict[str, tuple[pd.DataFrame, pd.Series]]) -> pd.DataFrame:
    """One row per table: regions, dimension, regions without images, mean images per region, mean vector norm."""
    return pd.DataFrame({
        m: {"regions": len(t), "dimension": t.shape[1], "regions without images": int((c == 0).sum()),
            "mean images per region": round(float(c.mean()), 2),
            "mean norm": round(float(np.linalg.norm(t, axis=1).mean()), 3)}
        for m, (t, c) in embedded.items()
    }).T


def training_summary(results: dict, caches: dict, counts: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """One row per modality (or run): model, data, untrained vs best validation triplet accuracy, speed."""
    rows = {}
    for modality, result in results.items():
        h = result.history.set_index("epoch")
        trained = h.loc[h.index > 0]
        spec = result.model.spec
        cache = caches[modality]
        row = {
            "backbone": spec.backbone,
            "image size": "x".join(map(str, cache.image_shape)),
            "embedding dim": spec.embedding_dim,
            "cached images": len(cache),
            "epochs run": int(trained.index.max()) if len(trained) else 0,
            "best epoch": result.best_epoch,
            "val accuracy untrained": float(h.loc[0, "val_accuracy"]) if 0 in h.index else np.nan,
            "val accuracy best epoch": float(h.loc[result.best_epoch, "val_accuracy"]) if result.best_epoch in h.index else np.nan,
            "val accuracy last epoch": float(trained["val_accuracy"].iloc[-1]) if len(trained) else np.nan,
            "val loss untrained": float(h.loc[0, "val_loss"]) if 0 in h.index else np.nan,
            "val loss best epoch": float(h.loc[result.best_epoch, "val_loss"]) if result.best_epoch in h.index else np.nan,
            "train images/s": float(trained["train_images_per_s"].median()) if len(trained) else np.nan,
            "training seconds": float(trained["seconds"].sum()) if len(trained) else 0.0,
            "resumed from epoch": result.resumed_from_epoch,
        }
        if counts is not None and modality in counts:
            row["regions without images"] = int((counts[modality] == 0).sum())
        rows[modality] = row
    return pd.DataFrame(rows).T


def histories(results: dict) -> pd.DataFrame:
    """Every run's per-epoch history side by side (columns: run, then the history's columns)."""
    return pd.concat({m: r.history.set_index("epoch") for m, r in results.items()}, axis=1).round(4)


def region_triplet_accuracy(table: pd.DataFrame, triplets: pd.DataFrame) -> float:
    """Triplet accuracy at the region level: is the anchor region's embedding (the mean over its images) closer to the
    positive region's than to the negative region's? This is what the downstream stages consume."""
    z = table.to_numpy(dtype=np.float64)
    index = pd.Index(table.index)
    a, p, n = (z[index.get_indexer(pd.Index(triplets[f"{r}_region"].astype(object)))] for r in ("anchor", "positive", "negative"))
    return float((np.linalg.norm(a - p, axis=1) < np.linalg.norm(a - n, axis=1)).mean())


def add_region_accuracy(summary: pd.DataFrame, city: City, embedded: dict[str, tuple[pd.DataFrame, pd.Series]]) -> pd.DataFrame:
    """`summary` with a column `val accuracy regions`: the validation triplets scored on the region embeddings."""
    summary = summary.copy()
    for m, (table, _) in embedded.items():
        summary.loc[m, "val accuracy regions"] = region_triplet_accuracy(table, city.triplets(m, "val"))
    return summary


def encoder_metrics(summary_row: pd.Series) -> dict[str, Any]:
    """The metrics file of one modality (reports/encoders_<m>.json), for `dvc metrics show`."""
    keys = {
        "val_accuracy_untrained": "val accuracy untrained",
        "val_accuracy_best": "val accuracy best epoch",
        "val_accuracy_last": "val accuracy last epoch",
        "val_accuracy_regions": "val accuracy regions",
        "val_loss_untrained": "val loss untrained",
        "val_loss_best": "val loss best epoch",
        "best_epoch": "best epoch",
        "epochs_run": "epochs run",
        "train_images_per_s": "train images/s",
        "training_seconds": "training seconds",
    }
    out = {}
    for key, column in keys.items():
        value = summary_row.get(column)
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            out[key] = round(float(value), 4) if isinstance(value, (float, np.floating)) else int(value)
    return out


def config_table(params: dict[str, Any], modalities: list[str]) -> pd.DataFrame:
    """The trainer settings that differ between modalities or matter most, one column per modality."""
    rows = {}
    for modality in modalities:
        c = train_config(params, modality, progress=False)
        rows[modality] = {
            "backbone": c.model.backbone, "weights": c.model.weights, "normalize": c.model.normalize,
            "embedding dim": c.model.embedding_dim, "image size": modality_settings(params, modality)["image_size"],
            "augment": c.augment, "loss": c.loss.kind, "margin": c.loss.margin, "epochs": c.epochs,
            "batch (triplets)": c.batch_size, "triplets per epoch": c.samples_per_epoch or "all",
            "val triplets": c.val_samples or "all", "lr": c.lr, "select by": c.select_by, "device": c.device,
            "precision": c.precision,
        }
    return pd.DataFrame(rows)
