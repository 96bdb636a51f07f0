"""Baselines and ablations built from the MuseCL stages' own parts (params.yaml `baselines`).

Two kinds, each written as a region embedding table under `<paths.work>/embeddings/<name>.parquet`, where the
evaluation stage's representation registry picks it up:

* **runs** (stage `baselines`, notebooks/03b_baseline_encoders.ipynb): an image encoder trained with the *same*
  triplet builder (`musecl.pairs.triplets_from_spec`) and the *same* trainer (`musecl.encoders.train_encoder`) as
  MuseCL's encoders, under another pair rule and/or loss: Tile2Vec, PG-SimCLR, Urban2Vec's visual step, and the
  random-positive ablations. A run's settings are its modality's MuseCL settings (`pairs.modalities.<m>`,
  `encoders.<m>`) with the run's `pairs` / `encoder` overrides merged in, so a baseline differs from MuseCL's encoder
  only where params.yaml says so (same images, budget, optimiser, seed). A run with `train: false` embeds the images
  with the backbone's pooled features and no contrastive training (the paper's "ResNet-18" and "Inception v3" rows):
  ImageNet weights when the torchvision file is in the local hub cache (`weights: auto`), else the untrained network,
  and the run's metrics file says which.
* **variants** (stage `variants`, notebooks/05b_fusion_variants.ipynb): the attentive fusion of stage `fusion` on other
  inputs or with other settings: Fusion-svrv (no text alignment), InfoNCE instead of MSE, and the fusion of the
  random-positive encoders (MuseCL without POI-based / mobility-based pairs).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.config import deep_merge

MODALITIES = ("rs", "sv")
_RUN_KEYS = {"modality", "train", "pairs", "encoder", "description"}
_VARIANT_KEYS = {"rs", "sv", "fusion", "description"}
RUN_STAGE = "03b_baseline_encoders"
VARIANT_STAGE = "05b_fusion_variants"


@dataclass(frozen=True)
class BaselineRun:
    """One baseline encoder: its modality's MuseCL settings with the run's overrides merged in."""

    name: str
    modality: str
    train: bool
    pairs: dict[str, Any]
    encoder: dict[str, Any]
    description: str


def _section(params: dict[str, Any], key: str) -> dict[str, Any]:
    section = params.get("baselines", {}).get(key)
    if not isinstance(section, dict):
        raise KeyError(f"params.yaml: baselines.{key} is missing or not a mapping")
    return section


def _selected(params: dict[str, Any], key: str, selected_key: str) -> list[str]:
    """`baselines.<selected_key>` (the DVC stage sets one name per stage) checked against `baselines.<key>`, or all."""
    entries = _section(params, key)
    selected = params["baselines"].get(selected_key) or list(entries)
    unknown = [n for n in selected if n not in entries]
    if unknown:
        raise KeyError(f"params.yaml: baselines.{selected_key} names {unknown}, which baselines.{key} does not define "
                       f"({key}: {sorted(entries)})")
    return list(selected)


def _entry(params: dict[str, Any], key: str, name: str, known: set[str]) -> dict[str, Any]:
    """`baselines.<key>.<name>` as a dict; an unknown name or key is an error naming the params.yaml key."""
    entries = _section(params, key)
    if name not in entries:
        raise KeyError(f"params.yaml: baselines.{key} has no entry {name!r} ({key}: {sorted(entries)})")
    spec = dict(entries[name] or {})
    unknown = sorted(set(spec) - known)
    if unknown:
        raise ValueError(f"params.yaml: baselines.{key}.{name} has unknown key(s) {unknown}; known: {sorted(known)}")
    return spec


def run_names(params: dict[str, Any]) -> list[str]:
    """The runs to do now: `baselines.selected` (the DVC stage sets one per stage) or every run."""
    return _selected(params, "runs", "selected")


def baseline_run(params: dict[str, Any], name: str) -> BaselineRun:
    """The resolved settings of run `name`; errors name the params.yaml key that is wrong."""
    spec = _entry(params, "runs", name, _RUN_KEYS)
    modality = spec.get("modality")
    if modality not in MODALITIES:
        raise ValueError(f"params.yaml: baselines.runs.{name}.modality must be one of {MODALITIES}, got {modality!r}")
    base_encoder = params["encoders"][modality]
    encoder = deep_merge(base_encoder, spec.get("encoder"))
    if encoder["image_size"] != base_encoder["image_size"]:
        raise ValueError(
            f"params.yaml: baselines.runs.{name}.encoder.image_size ({encoder['image_size']}) differs from "
            f"encoders.{modality}.image_size ({base_encoder['image_size']}): baselines share the `encoders` stage's "
            "image cache, so they train on the same images"
        )
    return BaselineRun(
        name=name,
        modality=modality,
        train=bool(spec.get("train", True)),
        pairs=deep_merge(params["pairs"]["modalities"][modality], spec.get("pairs")),
        encoder=encoder,
        description=str(spec.get("description", "")),
    )


def run_paths(params: dict[str, Any], name: str, modality: str) -> dict[str, Path]:
    work, models, reports = (Path(params["paths"][k]) for k in ("work", "models", "reports"))
    return {
        "cache": work / "image_cache" / modality,  # the `encoders` stage's cache
        "checkpoints": models / "baselines" / name,
        "embeddings": work / "embeddings" / f"{name}.parquet",
        "reports": reports / RUN_STAGE / name,
        "metrics": reports / "baselines" / f"{name}.json",
    }


def run_triplets(params: dict[str, Any], run: BaselineRun, bundle):
    """The run's train/val triplets: the `pairs` stage's builder with the run's rule, on the run's own seeded stream."""
    from musecl.encoders.image_cache import image_table
    from musecl.pairs import _modality_rng, region_indicator_tables, triplets_from_spec

    tables = region_indicator_tables(bundle, params["pairs"])
    return triplets_from_spec(image_table(bundle, run.modality), tables, run.pairs, params["pairs"],
                              _modality_rng(int(params["seed"]), run.name), f"baselines.runs.{run.name}.pairs")


def train_run(params: dict[str, Any], run: BaselineRun, cache, triplets, progress: bool = True):
    """Train the run's encoder with the shared trainer (resumes an interrupted run from its last checkpoint)."""
    from musecl.encoders import train_encoder
    from musecl.encoders.stage import config_from_spec

    paths = run_paths(params, run.name, run.modality)
    config = config_from_spec(run.encoder, params, paths["reports"] / "dvclive", progress)
    return train_encoder(cache, triplets.train, triplets.val, config, paths["checkpoints"])


def resolve_weights(weights: str, backbone: str) -> str:
    """`auto` -> `imagenet` when torchvision's file for `backbone` is in the local hub cache, else `none`."""
    from musecl.encoders import imagenet_checkpoint

    if weights != "auto":
        return weights
    return "imagenet" if imagenet_checkpoint(backbone).is_file() else "none"


def feature_encoder(params: dict[str, Any], run: BaselineRun, cache):
    """The backbone without contrastive training: pooled features (512-d ResNet-18, 2048-d Inception-v3), no head.

    BatchNorm running statistics are re-estimated on `bn_recalibration` of the city's images (seeded sample): a random
    init's statistics (mean 0, variance 1) would make eval-mode features of an untrained network meaningless, and
    ImageNet statistics do not describe these images either.
    """
    from torch import nn

    from musecl.encoders import build_encoder
    from musecl.encoders.models import BACKBONES, ModelSpec
    from musecl.encoders.stage import config_from_spec
    from musecl.encoders.train import recalibrate_on_cache

    spec = run.encoder
    weights = resolve_weights(str(spec.get("weights", "auto")), spec["backbone"])
    model_spec = ModelSpec(backbone=spec["backbone"], embedding_dim=BACKBONES[spec["backbone"]][0], weights=weights,
                           normalize=spec.get("normalize", "none"), init=spec.get("init", "torchvision"))
    model = build_encoder(model_spec, seed=int(params["seed"]))
    model.head = nn.Identity()
    smallest = BACKBONES[spec["backbone"]][2]
    height, width = cache.image_shape
    if min(height, width) < smallest:
        # e.g. Inception-v3 (>= 75 px) on the 64 px street-view cache of the CPU default: upsample bilinearly
        scale = smallest / min(height, width)
        size = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
        model.backbone = nn.Sequential(nn.Upsample(size=size, mode="bilinear", align_corners=False), model.backbone)
    config = config_from_spec({**spec, "weights": weights}, params, None, progress=False)
    n = int(spec.get("bn_recalibration") or 512)
    rows = np.random.default_rng([int(params["seed"]), 11]).permutation(len(cache))[:n]
    recalibrate_on_cache(model, cache, rows, config)
    return model.eval(), weights


def save_feature_encoder(model, weights: str, path: Path) -> Path:
    """Save the feature encoder (untrained or ImageNet backbone with re-estimated BatchNorm statistics) atomically, as
    tensors only (`torch.load(path, weights_only=True)` reads it back)."""
    import torch

    from musecl.storage import atomic_path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"format": 1, "backbone": model.spec.backbone, "weights": weights,
             "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()}}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def embed_run(params: dict[str, Any], run: BaselineRun, model, cache, bundle, progress: bool = True):
    """Region embeddings of the run's encoder, aggregated like MuseCL's (`encoders.missing_regions`), written to
    `<work>/embeddings/<name>.parquet`."""
    from musecl.embeddings import write_embeddings
    from musecl.encoders.embed import region_embeddings

    runtime = params["encoders"].get("runtime", {})
    regions = bundle.regions()["region_id"].astype(str).to_numpy(dtype=object)
    table, counts = region_embeddings(
        model, cache, regions,
        missing=params["encoders"].get("missing_regions", "neighbours"),
        batch_size=int(runtime.get("eval_batch_size", 256)),
        device=runtime.get("device", "auto"),
        precision=runtime.get("precision", "auto"),
        progress=progress,
    )
    write_embeddings(table, run_paths(params, run.name, run.modality)["embeddings"])
    return table, counts


def run_table(params: dict[str, Any], names: list[str] | None = None) -> pd.DataFrame:
    """What each run is: modality, positive rule, negatives, loss, backbone, budget; one row per run."""
    rows = {}
    for name in names or list(_section(params, "runs")):
        run = baseline_run(params, name)
        e, p = run.encoder, run.pairs
        loss = e.get("loss", {})
        rows[name] = {
            "modality": run.modality,
            "trained": run.train,
            "positives": _positives(p) if run.train else "-",
            "negatives": (f">= {p['negative_min_ring']} H3 steps away" if p.get("negative_min_ring") else "any other region") if run.train else "-",
            "loss": (f"{loss.get('kind')} m={loss.get('margin')}" + (f" +{loss.get('norm_penalty')}|z|" if loss.get("norm_penalty") else "")
                     if loss.get("kind", "triplet") == "triplet" else f"ntxent tau={loss.get('temperature')}") if run.train else "-",
            "backbone": e["backbone"],
            "weights": e.get("weights"),
            "augment": e.get("augment") if run.train else "-",
            "epochs x triplets": f"{e.get('epochs')} x {e.get('samples_per_epoch') or 'all'}" if run.train else "-",
            "description": run.description,
        }
    return pd.DataFrame(rows).T


def _positives(p: dict[str, Any]) -> str:
    rule = str(p.get("rule", "similarity"))
    parts = []
    if "similarity" in rule:
        parts.append(f"top-{p.get('top_k', 1)} by {p.get('indicator', 'poi')} similarity")
    if "neighbours" in rule:
        parts.append(f"H3 neighbours within {p.get('neighbour_ring', 1)}")
    return " or ".join(parts) or "random region"


def input_size(model, cache) -> list[int]:
    """The image size the backbone sees: the cache's, or the upsampled size of `feature_encoder`."""
    from torch import nn

    first = model.backbone[0] if isinstance(model.backbone, nn.Sequential) else None
    if isinstance(first, nn.Upsample):
        return [int(v) for v in first.size]
    return [int(v) for v in cache.image_shape]


def run_metrics(run: BaselineRun, result=None, weights: str | None = None, region_accuracy: float | None = None,
                input_px: list[int] | None = None) -> dict[str, Any]:
    """The metrics file of one run (reports/baselines/<name>.json)."""
    out: dict[str, Any] = {"modality": run.modality, "trained": run.train, "backbone": run.encoder["backbone"]}
    if input_px is not None:
        out["input_px"] = input_px
    if weights is not None:
        out["weights"] = weights
    if result is not None:
        h = result.history.set_index("epoch")
        out.update({
            "val_accuracy_untrained": round(float(h.loc[0, "val_accuracy"]), 4),
            "val_accuracy_best": round(float(h.loc[result.best_epoch, "val_accuracy"]), 4),
            "best_epoch": int(result.best_epoch),
            "epochs_run": int(h.index.max()),
            "training_seconds": round(float(h.loc[h.index > 0, "seconds"].sum()), 2),
        })
    if region_accuracy is not None:
        out["val_accuracy_regions"] = round(float(region_accuracy), 4)
    return out


# ---- fusion variants ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FusionVariant:
    name: str
    rs: str  # embedding table names under <work>/embeddings (without .parquet)
    sv: str
    fusion: dict[str, Any]  # the `fusion` section with the variant's overrides merged in
    description: str


def variant_names(params: dict[str, Any]) -> list[str]:
    return _selected(params, "variants", "selected_variants")


def fusion_variant(params: dict[str, Any], name: str) -> FusionVariant:
    spec = _entry(params, "variants", name, _VARIANT_KEYS)
    return FusionVariant(name, str(spec.get("rs", "rs")), str(spec.get("sv", "sv")),
                         deep_merge(params["fusion"], spec.get("fusion")), str(spec.get("description", "")))


def run_variant(params: dict[str, Any], variant: FusionVariant, progress: bool = False):
    """Fuse the variant's inputs with its fusion settings; writes `<work>/embeddings/<name>.parquet` and the attention
    weights to `<work>/variants/<name>_attention.parquet`. Returns the FusionResult."""
    from musecl import fusion
    from musecl.embeddings import read_embeddings, write_embeddings

    work = Path(params["paths"]["work"])
    emb = work / "embeddings"
    rs = read_embeddings(emb / f"{variant.rs}.parquet")
    sv = read_embeddings(emb / f"{variant.sv}.parquet")
    config = fusion.FusionConfig.from_params(variant.fusion, int(params["seed"]))
    needs_text = config.loss != "none" or config.output != "image"
    text = read_embeddings(emb / "poi_text.parquet") if needs_text else None
    result = fusion.fuse_regions(rs, sv, text, config, progress=progress)
    write_embeddings(result.embeddings, emb / f"{variant.name}.parquet")
    fusion.write_attention(result.attention, work / "variants" / f"{variant.name}_attention.parquet")
    return result


# ---- one run, end to end (what the notebook calls) ------------------------------------------------------------------
@dataclass
class RunOutcome:
    run: BaselineRun
    table: pd.DataFrame  # region embeddings
    counts: pd.Series  # images per region
    weights: str  # the backbone weights actually used: none | imagenet
    result: Any = None  # TrainResult (trained runs)
    triplets: Any = None  # TripletSet (trained runs)
    region_accuracy: float | None = None  # validation triplet accuracy of the region embeddings
    input_px: list[int] | None = None  # image size the backbone saw


def open_cache(params: dict[str, Any], modality: str):
    """The `encoders` stage's image cache of `modality` (baselines train on exactly those images)."""
    from musecl.encoders.image_cache import ImageCache

    path = run_paths(params, "-", modality)["cache"]
    try:
        return ImageCache.open(path)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{err}; run the `encoders@{modality}` stage first (dvc repro encoders@{modality})") from None


def execute_run(params: dict[str, Any], name: str, bundle, progress: bool = True) -> RunOutcome:
    """Triplets -> training (or backbone features) -> region embeddings -> metrics file, for run `name`."""
    from musecl.encoders.stage import region_triplet_accuracy
    from musecl.storage import write_json

    run = baseline_run(params, name)
    paths = run_paths(params, run.name, run.modality)
    cache = open_cache(params, run.modality)
    result = triplets = accuracy = None
    if run.train:
        triplets = run_triplets(params, run, bundle)
        result = train_run(params, run, cache, triplets, progress)
        model, weights = result.model, str(run.encoder.get("weights", "none"))
    else:
        model, weights = feature_encoder(params, run, cache)
        save_feature_encoder(model, weights, paths["checkpoints"] / "features.pt")
    table, counts = embed_run(params, run, model, cache, bundle, progress)
    if triplets is not None:
        accuracy = region_triplet_accuracy(table, triplets.val)
    px = input_size(model, cache)
    write_json(run_metrics(run, result, weights, accuracy, px), paths["metrics"])
    return RunOutcome(run, table, counts, weights, result, triplets, accuracy, px)


def outcome_table(outcomes: dict[str, RunOutcome]) -> pd.DataFrame:
    """One row per run: weights, dimension, validation accuracy (untrained, best epoch, region level), seconds."""
    rows = {}
    for name, o in outcomes.items():
        m = run_metrics(o.run, o.result, o.weights, o.region_accuracy)
        rows[name] = {
            "modality": o.run.modality,
            "weights": "ImageNet" if o.weights == "imagenet" else ("untrained (random init)" if not o.run.train else "random init"),
            "input px": "x".join(map(str, o.input_px or [])),
            "dimension": o.table.shape[1],
            "regions": len(o.table),
            "regions without images": int((o.counts == 0).sum()),
            "val accuracy untrained": m.get("val_accuracy_untrained", np.nan),
            "val accuracy best epoch": m.get("val_accuracy_best", np.nan),
            "val accuracy regions": m.get("val_accuracy_regions", np.nan),
            "training seconds": m.get("training_seconds", 0.0),
        }
    return pd.DataFrame(rows).T
