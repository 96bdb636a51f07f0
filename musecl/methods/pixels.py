"""The pixel-statistics method: colour histograms, channel means and spreads, and edge density of a modality's cached
images, averaged per region (:mod:`musecl.encoders.pixel_stats`). Nothing is learnt: it is the floor that a learned
image encoder must beat (the `Pixel stats RS` / `Pixel stats SV` reference rows of the evaluation).

It reads the same image cache as the image methods and aggregates through the same helpers (mean over a region's
images, `encoders.missing_regions` for regions without one), so the only difference to an encoder row is the per-image
vector.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import pandas as pd

from musecl.contract import check_modality
from musecl.methods.base import City, RegionEmbedder, register_method

SETTINGS_FILE = "pixel_stats.json"


@register_method("pixel_stats")
class PixelStats(RegionEmbedder):
    """Per-image colour and edge statistics (34 columns with the default `settings`), mean per region.

    `settings`: :class:`musecl.encoders.pixel_stats.PixelStatsConfig` keys (`bins`, `edge_thresholds`). `fit` learns
    nothing; it records what the cache holds (`n_images`, `image_shape`) so that :meth:`save` describes the run.
    """

    def __init__(self, name: str, modality: str, settings: Mapping[str, Any] | None = None) -> None:
        from musecl.encoders.pixel_stats import PixelStatsConfig

        super().__init__(name)
        self.modality = check_modality(modality, f"{name}: modality")
        self.config = PixelStatsConfig.from_dict(settings, f"baselines.runs.{name}.features")
        self.n_images: int | None = None  # images in the cache at fit time
        self.image_shape: list[int] | None = None
        self.counts: pd.Series | None = None  # images per region of the last transform

    @property
    def feature_names(self) -> list[str]:
        """What each column e000, e001, ... of the table is."""
        from musecl.encoders.pixel_stats import feature_names

        return feature_names(self.config)

    def fit(self, city: City) -> "PixelStats":
        cache = city.image_cache(self.modality)
        self.n_images, self.image_shape = len(cache), [int(v) for v in cache.image_shape]
        return self

    def transform(self, city: City) -> pd.DataFrame:
        from musecl.encoders.pixel_stats import region_pixel_stats

        if self.n_images is None:
            raise RuntimeError(f"{self!r}: call fit() (or load()) before transform()")
        table, self.counts = region_pixel_stats(
            city.image_cache(self.modality), city.region_ids(), self.config,
            missing=city.params["encoders"].get("missing_regions", "neighbours"), progress=city.progress)
        return table

    def save(self, folder: str | Path) -> Path:
        """pixel_stats.json: the settings, the column names and what the cache held at fit time (sorted keys, so the
        same settings and cache give the same bytes)."""
        from musecl.storage import write_json

        if self.n_images is None:
            raise RuntimeError(f"{self!r}: call fit() before save()")
        path = Path(folder) / SETTINGS_FILE
        write_json({"format": 1, "kind": self.kind, "name": self.name, "modality": self.modality,
                    "settings": self.config.to_dict(), "feature_names": self.feature_names,
                    "n_images": self.n_images, "image_shape": self.image_shape}, path)
        return path

    @classmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> "PixelStats":
        """The method :meth:`save` wrote under `folder`."""
        path = Path(folder) / SETTINGS_FILE
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no pixel-statistics settings (run the method's fit() and save() first)")
        state = json.loads(path.read_text())
        if state.get("kind") != cls.kind:
            raise ValueError(f"{path}: kind {state.get('kind')!r}, expected {cls.kind!r}")
        method = cls(str(state["name"]), str(state["modality"]), state["settings"])
        method.n_images, method.image_shape = int(state["n_images"]), list(state["image_shape"])
        return method
