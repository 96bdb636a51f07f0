"""The image-text methods: UrbanCLIP (CoCa on one captioner's sentences) and UrbanLN (CLIP on consensus-selected,
refined long captions, with positional stretching and momentum self-distillation), as region embedders.

Both read a modality's image cache (the `encoders` stage's, the same images every image method sees), turn each image
into frozen ImageNet trunk tokens (:func:`musecl.imagetext.towers.image_tokens`), pair it with its caption(s) from the
`captions` stage, train the image-text model (:mod:`musecl.imagetext.train`) with a held-out share of the regions for
the best epoch and retrieval, and embed a region as the mean of its images' contrastive image latents (regions without
an image by `encoders.missing_regions`, as every image method).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID, check_modality
from musecl.methods.base import City, RegionEmbedder, register_method

STATE_FILE = "model.pt"
INFO_FILE = "imagetext.json"
SELECTIONS = ("consensus", "random")


@dataclass(frozen=True)
class ImageTextRun:
    """One row of the image-text tables: which model, on which images and captions, with which ablation switches."""

    name: str
    model: str  # urbanclip | urbanln
    modality: str
    captions: str = "consensus"  # urbanln: consensus | random (the ablation without consensus)
    refine: bool = True  # urbanln: drop phrases the pretrained model does not ground
    overrides: Mapping[str, Any] = field(default_factory=dict)  # ImageTextConfig keys (stretch: false, distill: false)
    description: str = ""

    KEYS = ("model", "modality", "captions", "refine", "config", "description")

    @classmethod
    def from_config(cls, name: str, cfg: Mapping[str, Any]) -> "ImageTextRun":
        where = f"params.yaml imagetext.runs.{name}"
        unknown = sorted(set(cfg) - set(cls.KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; known: {sorted(cls.KEYS)}")
        model = str(cfg.get("model", ""))
        if model not in ("urbanclip", "urbanln"):
            raise ValueError(f"{where}.model: expected urbanclip or urbanln, got {model!r}")
        captions = str(cfg.get("captions", "consensus"))
        if captions not in SELECTIONS:
            raise ValueError(f"{where}.captions: expected one of {SELECTIONS}, got {captions!r}")
        return cls(name, model, check_modality(str(cfg.get("modality", "")), f"{where}.modality"), captions,
                   bool(cfg.get("refine", True)), dict(cfg.get("config") or {}), str(cfg.get("description", "")))


def validation_regions(region_ids: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """The held-out regions (sorted): a seeded share of the regions, whose images train nothing (best epoch, retrieval)."""
    if not 0 < fraction < 1:
        raise ValueError(f"imagetext.val_fraction must be in (0, 1), got {fraction!r}")
    ids = np.sort(np.asarray(region_ids, dtype=object))
    rng = np.random.default_rng([int(seed), 9001])
    n_val = max(1, int(round(fraction * len(ids))))
    return np.sort(ids[rng.permutation(len(ids))[:n_val]])


def caption_sentences(caption: str) -> list[str]:
    """UrbanCLIP's pairs: the description split into sentences on '. ' (the authors' rule), each ending with '.'."""
    parts = [p.strip() for p in str(caption).replace("\n", " ").split(". ")]
    return [p if p.endswith(".") else p + "." for p in parts if p.strip(" .")]


def fitted_queue(config, n_train: int, name: str):
    """`config` with UrbanLN's feature queue lowered, with a warning, when the city has too few training images for it
    (the queue must be a multiple of the batch and below the number of training images; 0 = batch-only targets)."""
    import warnings
    from dataclasses import replace

    from musecl.imagetext.loop import batch_size_for

    if not config.distill or config.queue_size < n_train:
        return config
    batch = batch_size_for(config.batch_size, n_train)
    size = ((n_train - 1) // batch) * batch
    warnings.warn(f"{name}: queue_size {config.queue_size} lowered to {size}: the queue must stay below the "
                  f"{n_train} training images (a multiple of the batch, {batch})", stacklevel=2)
    return replace(config, queue_size=size)


@register_method("image_text")
class ImageTextEmbedder(RegionEmbedder):
    """UrbanCLIP or UrbanLN on one modality's images (see the module). Construct with the run, the model settings
    (`musecl.imagetext.config.ImageTextConfig`), the stage's shared settings and the captions of the images.

    After `fit`: `model`, `history` (per phase and epoch), `tokens_shape`, `text_info`, `refined` (UrbanLN: the
    refined captions with the removed phrases, when refinement ran), `val_regions`.
    """

    def __init__(self, run: ImageTextRun, config, settings: Mapping[str, Any],
                 captions: pd.DataFrame | None = None, pretrained=None, refined: pd.DataFrame | None = None) -> None:
        super().__init__(run.name)
        self.run, self.config, self.settings = run, config, dict(settings)
        self.captions = captions  # image_id, caption (the selected / UrbanCLIP captioner's captions of this modality)
        self.pretrained = pretrained  # UrbanLN: a short-caption model shared by runs with the same captions
        self.pretrain_history: pd.DataFrame | None = None
        self.model = None
        self.history: pd.DataFrame | None = None
        # UrbanLN: the refined captions; given, they are used as they are (a run sharing `pretrained` and the captions
        # refines to the same table, so the stage computes it once)
        self.refined: pd.DataFrame | None = refined
        self.val_regions: np.ndarray | None = None
        self.dropped_images = 0  # images without a caption (left out of training, still embedded)

    # ---- inputs --------------------------------------------------------------------------------------------------
    def tokens(self, city: City):
        from musecl.imagetext.towers import image_tokens

        return image_tokens(city.image_cache(self.run.modality), backbone=self.config.backbone,
                            input_size=self.config.input_size, stages=self.config.trunk_stages,
                            device=self.config.device, precision=self.config.precision, progress=city.progress)

    def training_rows(self, city: City) -> tuple[np.ndarray, pd.DataFrame, np.ndarray]:
        """Cache rows that have a caption, their captions (in row order) and the validation mask."""
        cache = city.image_cache(self.run.modality)
        if self.captions is None:
            raise RuntimeError(f"{self!r}: no captions given")
        index = cache.index.reset_index(drop=True)
        table = index[["image_id", REGION_ID]].assign(row=np.arange(len(index))).merge(
            self.captions[["image_id", "caption"]], on="image_id", how="inner").sort_values("row")
        self.dropped_images = int(len(index) - len(table))
        if table.empty:
            raise ValueError(f"{self.name}: none of the {len(index)} {self.run.modality} images has a caption")
        self.val_regions = validation_regions(city.region_ids(), float(self.settings.get("val_fraction", 0.2)),
                                              city.seed)
        val_mask = table[REGION_ID].isin(set(self.val_regions)).to_numpy()
        if val_mask.all() or not val_mask.any():
            raise ValueError(f"{self.name}: the held-out regions must leave images on both sides "
                             f"({int(val_mask.sum())} of {len(val_mask)} held out)")
        return table["row"].to_numpy(), table.reset_index(drop=True), val_mask

    # ---- the method ----------------------------------------------------------------------------------------------
    def fit(self, city: City) -> "ImageTextEmbedder":
        from musecl.imagetext.train import fit_urbanclip, fit_urbanln

        tokens = self.tokens(city)
        rows, table, val_mask = self.training_rows(city)
        x = tokens[np.array(rows, dtype=np.int64)]  # a writable copy of the row numbers (torch indexing)
        seed = city.seed
        folder = city.models / "imagetext" / self.name
        if self.run.model == "urbanclip":
            sentences = [caption_sentences(c) for c in table["caption"]]
            self.model, self.history = fit_urbanclip(x, sentences, val_mask, self.config, seed,
                                                     progress=city.progress, checkpoint_dir=folder)
        else:
            self.config = fitted_queue(self.config, int((~val_mask).sum()), self.name)
            if self.pretrained is None:
                self.pretrained = self.pretrain(city, x, table, val_mask)
            pretrained = self.pretrained
            long = table["caption"].tolist()
            if self.run.refine:
                if self.refined is None:
                    self.refined = self.refine(pretrained, x, table)
                elif self.refined["image_id"].tolist() != table["image_id"].tolist():
                    raise ValueError(f"{self.name}: the given refined captions are not those of this run's images")
                long = self.refined["caption"].tolist()
            short = [caption_sentences(c)[0] for c in table["caption"]]
            self.model, self.history = fit_urbanln(x, short, long, val_mask, self.config, seed,
                                                   progress=city.progress, checkpoint_dir=folder,
                                                   pretrained=pretrained)
        return self

    def pretrain(self, city: City, x, table: pd.DataFrame, val_mask: np.ndarray):
        """UrbanLN's phase (a): CLIP on the first sentence of each caption (shared by the runs of the same captions)."""
        from musecl.imagetext.train import pretrain_urbanln

        short = [caption_sentences(c)[0] for c in table["caption"]]
        model, history = pretrain_urbanln(x, short, table["caption"].tolist(), val_mask, self.config, city.seed,
                                          progress=city.progress)
        self.pretrain_history = history
        return model

    def refine(self, pretrained, x, table: pd.DataFrame) -> pd.DataFrame:
        """Drop the phrases of each caption that the short-caption model does not ground in its image (the rank of
        the image among all images for the phrase below `imagetext.refine.threshold`; OWLv2's role in UrbanLN)."""
        from musecl.imagetext.refine import refine_captions
        from musecl.imagetext.retrieval import phrase_image_similarity

        cfg = self.settings.get("refine") or {}

        def scorer(phrases, own):
            return phrase_image_similarity(pretrained, x, phrases, own)

        return refine_captions(table[["image_id", "caption"]], scorer, threshold=float(cfg.get("threshold", 0.5)),
                               min_phrases=int(cfg.get("min_phrases", 1)))

    def image_embeddings(self, city: City) -> np.ndarray:
        from musecl.imagetext.retrieval import encode_images

        if self.model is None:
            raise RuntimeError(f"{self!r}: call fit() (or load()) before transform()")
        return encode_images(self.model, self.tokens(city))

    def transform(self, city: City) -> pd.DataFrame:
        from musecl.embeddings import to_frame
        from musecl.encoders.embed import fill_missing, region_means

        cache = city.image_cache(self.run.modality)
        region_ids = pd.Index(city.region_ids(), name=REGION_ID)
        means, counts = region_means(self.image_embeddings(city), cache.index[REGION_ID].to_numpy(), region_ids)
        means = fill_missing(means, counts, region_ids, city.params["encoders"].get("missing_regions", "neighbours"))
        self.counts = pd.Series(counts, index=region_ids, name="n_images")
        return to_frame(region_ids, means)

    def save(self, folder: str | Path) -> Path:
        from musecl.imagetext.models import model_state
        from musecl.storage import save_torch, write_json

        if self.model is None:
            raise RuntimeError(f"{self!r}: call fit() before save()")
        folder = Path(folder)
        save_torch(model_state(self.model), folder / STATE_FILE)
        write_json({"format": 1, "kind": self.kind, "name": self.name, "run": {
            "model": self.run.model, "modality": self.run.modality, "captions": self.run.captions,
            "refine": self.run.refine, "config": dict(self.run.overrides), "description": self.run.description},
            "settings": self.settings, "config": self.config.to_dict()}, folder / INFO_FILE)
        return folder / STATE_FILE

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> "ImageTextEmbedder":
        import torch

        from musecl.imagetext.config import ImageTextConfig
        from musecl.imagetext.models import load_model

        folder = Path(folder)
        if not (folder / INFO_FILE).is_file():
            raise FileNotFoundError(f"{folder / INFO_FILE}: no image-text model here (run the method's fit() and save())")
        info = json.loads((folder / INFO_FILE).read_text())
        method = cls(ImageTextRun.from_config(info["name"], info["run"]), ImageTextConfig.from_dict(info["config"]),
                     info["settings"])
        from musecl.storage import load_torch

        method.model = load_model(load_torch(folder / STATE_FILE, weights_only=False))
        return method
