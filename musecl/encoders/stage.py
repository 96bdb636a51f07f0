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

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.encoders.image_cache import ImageCache, image_table, open_or_build_cache
from musecl.encoders.models import ModelSpec
from musecl.encoders.train import LossSpec, TrainConfig, TrainResult, train_encoder

MODALITY_NAMES = {"rs": "remote sensing", "sv": "street view"}
_MODEL_KEYS = {f.name for f in fields(ModelSpec)}
_CACHE_KEYS = {"image_size"}
STAGE = "03_encoder_training"


def stage_paths(params: dict[str, Any], modality: str) -> dict[str, Path]:
    work, models, reports = (Path(params["paths"][k]) for k in ("work", "models", "reports"))
    return {
        "cache": work / "image_cache" / modality,
        "pairs": work / "pairs",
        "checkpoints": models / "encoders" / modality,
        "embeddings": work / "embeddings" / f"{modality}.parquet",
        "reports": reports / STAGE / modality,
        "metrics": reports / f"encoders_{modality}.json",
    }


def modality_settings(params: dict[str, Any], modality: str) -> dict[str, Any]:
    cfg = params["encoders"]
    if modality not in cfg:
        raise KeyError(f"params.yaml: encoders has no section '{modality}' (modalities: {sorted(MODALITY_NAMES)})")
    return dict(cfg[modality])


def train_config(params: dict[str, Any], modality: str, progress: bool = True) -> TrainConfig:
    """The trainer settings of one modality: `encoders.<modality>` + `encoders.runtime` + the global seed."""
    log_dir = stage_paths(params, modality)["reports"] / "dvclive"
    return config_from_spec(modality_settings(params, modality), params, log_dir, progress)


def config_from_spec(spec: dict[str, Any], params: dict[str, Any], log_dir: str | Path | None,
                     progress: bool = True) -> TrainConfig:
    """A TrainConfig from an `encoders.<modality>`-shaped dict (model, loss and trainer keys mixed, as in params.yaml)
    plus `encoders.runtime` and the global seed. The baselines build their configs through here too."""
    runtime = dict(params["encoders"].get("runtime", {}))
    runtime.pop("cache_workers", None)
    model = ModelSpec(**{k: v for k, v in spec.items() if k in _MODEL_KEYS})
    loss = LossSpec(**spec.get("loss", {}))
    rest = {k: v for k, v in spec.items() if k not in _MODEL_KEYS | _CACHE_KEYS | {"loss"}}
    return TrainConfig.from_dict(
        {**rest, **runtime, "model": model, "loss": loss, "seed": int(params["seed"]), "progress": progress,
         "log_dir": None if log_dir is None else str(log_dir)}
    )


def build_cache(params: dict[str, Any], modality: str, bundle, progress: bool = True) -> tuple[ImageCache, bool]:
    """Decode the modality's images once into `<work>/image_cache/<modality>` (reused when already up to date)."""
    spec = modality_settings(params, modality)
    workers = int(params["encoders"].get("runtime", {}).get("cache_workers", 2))
    table = image_table(bundle, modality)
    return open_or_build_cache(table, bundle.root, stage_paths(params, modality)["cache"], int(spec["image_size"]),
                               modality, workers, progress)


def train_modality(params: dict[str, Any], modality: str, cache: ImageCache, progress: bool = True) -> TrainResult:
    """Train the modality's encoder on the `pairs` stage's triplets (resumes an interrupted run)."""
    from musecl.pairs import read_triplets

    paths = stage_paths(params, modality)
    train = read_triplets(paths["pairs"], modality, "train")
    val = read_triplets(paths["pairs"], modality, "val")
    return train_encoder(cache, train, val, train_config(params, modality, progress), paths["checkpoints"])


def embed_modality(params: dict[str, Any], modality: str, result: TrainResult, cache: ImageCache, bundle,
                   progress: bool = True) -> tuple[pd.DataFrame, pd.Series]:
    """Region embeddings of the trained encoder for every region of the bundle, written to `<work>/embeddings/<m>.parquet`."""
    from musecl.embeddings import write_embeddings
    from musecl.encoders.embed import region_embeddings

    runtime = params["encoders"].get("runtime", {})
    regions = bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    table, counts = region_embeddings(
        result.model, cache, regions,
        missing=params["encoders"].get("missing_regions", "neighbours"),
        batch_size=int(runtime.get("eval_batch_size", 256)),
        device=runtime.get("device", "auto"),
        precision=runtime.get("precision", "auto"),
        progress=progress,
    )
    write_embeddings(table, stage_paths(params, modality)["embeddings"])
    return table, counts


def training_summary(results: dict[str, TrainResult], caches: dict[str, ImageCache],
                     counts: dict[str, pd.Series] | None = None) -> pd.DataFrame:
    """One row per modality: model, data, untrained vs best validation triplet accuracy, speed."""
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


def plot_training_curves(results: dict[str, TrainResult]):
    """Training/validation loss and validation triplet accuracy per epoch, one column per modality."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(results), figsize=(5.0 * len(results), 6.4), squeeze=False)
    for col, (modality, result) in enumerate(results.items()):
        h = result.history
        trained = h[h["epoch"] > 0]
        ax = axes[0, col]
        ax.plot(trained["epoch"], trained["train_loss"], marker="o", label="train")
        ax.plot(h["epoch"], h["val_loss"], marker="o", label="validation")
        ax.set_title(f"{MODALITY_NAMES.get(modality, modality)} ({result.model.spec.backbone})")
        ax.set_ylabel("loss")
        ax.legend(fontsize=8)
        ax = axes[1, col]
        ax.plot(h["epoch"], h["val_accuracy"], marker="o", color="tab:green", label="validation")
        ax.plot(trained["epoch"], trained["train_accuracy"], marker=".", color="tab:gray", label="train")
        ax.axhline(0.5, color="black", lw=1, ls="--")
        ax.axvline(result.best_epoch, color="tab:red", lw=1, ls=":", label=f"best epoch {result.best_epoch}")
        ax.set_ylim(0, 1)
        ax.set_xlabel("epoch (0 = untrained)")
        ax.set_ylabel("triplet accuracy")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_cache_samples(caches: dict[str, ImageCache], n: int = 6):
    """The first `n` cached images of each modality, as the encoder sees them (after resizing)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(caches), n, figsize=(1.9 * n, 2.1 * len(caches)), squeeze=False)
    for row, (modality, cache) in zip(axes, caches.items()):
        picks = np.linspace(0, len(cache) - 1, n).astype(int)
        for ax, i in zip(row, picks):
            ax.imshow(cache.images[i])
            ax.set_title(f"{modality} {cache.index['region_id'].iloc[i][-6:]}", fontsize=7)
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig


def embedding_pca(tables: dict[str, pd.DataFrame], indicators: pd.DataFrame, color_by: str):
    """First two principal components of each modality's region embeddings, coloured by an indicator."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tables), figsize=(4.8 * len(tables), 4.0), squeeze=False)
    for ax, (modality, table) in zip(axes[0], tables.items()):
        x = table.to_numpy(dtype=np.float64)
        x = x - x.mean(axis=0)
        u, s, _ = np.linalg.svd(x, full_matrices=False)
        pcs = u[:, :2] * s[:2]
        share = (s[:2] ** 2).sum() / max((s**2).sum(), 1e-12)
        colour = indicators.reindex(table.index)[color_by].to_numpy()
        points = ax.scatter(pcs[:, 0], pcs[:, 1], c=colour, s=12, cmap="viridis")
        fig.colorbar(points, ax=ax, shrink=0.8, label=color_by)
        ax.set_title(f"{MODALITY_NAMES.get(modality, modality)}: PC1-2 ({share:.0%} of variance)")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


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


def build_caches(params: dict[str, Any], bundle, modalities: list[str], progress: bool = True) -> tuple[dict[str, ImageCache], pd.DataFrame]:
    """Caches of all `modalities` and a table of what they hold."""
    caches, rows = {}, {}
    for modality in modalities:
        cache, reused = build_cache(params, modality, bundle, progress)
        caches[modality] = cache
        rows[modality] = {
            "images": len(cache),
            "regions with images": cache.index["region_id"].nunique(),
            "cached size (px)": "x".join(map(str, cache.image_shape)),
            "cache MB": round(cache.images.nbytes / 2**20, 1),
            "reused": reused,
        }
    return caches, pd.DataFrame(rows).T


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


def region_triplet_accuracy(table: pd.DataFrame, triplets: pd.DataFrame) -> float:
    """Triplet accuracy at the region level: is the anchor region's embedding (the mean over its images) closer to the
    positive region's than to the negative region's? This is what the downstream stages consume."""
    z = table.to_numpy(dtype=np.float64)
    index = pd.Index(table.index)
    a, p, n = (z[index.get_indexer(pd.Index(triplets[f"{r}_region"].astype(object)))] for r in ("anchor", "positive", "negative"))
    return float((np.linalg.norm(a - p, axis=1) < np.linalg.norm(a - n, axis=1)).mean())
