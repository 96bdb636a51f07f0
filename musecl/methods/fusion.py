"""The attentive fusion as a method (MuseCL step 4, :mod:`musecl.fusion`): region vectors of the two image encoders,
fused by a per-region attention that is trained to align with the POI text vectors. MuseCL itself and every fusion
variant (Fusion-svrv, InfoNCE, the fusion of the random-positive encoders, the sensitivity runs) are this method with
other inputs or settings."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pandas as pd

from musecl.methods.base import City, RegionEmbedder, register_method


@register_method("attentive_fusion")
class FusedRegions(RegionEmbedder):
    """`cfg`: params.yaml's `fusion` section (with a variant's overrides); `rs`, `sv`, `text`: the names of the input
    embedding tables (`City.embeddings`). The text table is read only when the loss or the output needs it.

    After `fit`, `self.result` is the :class:`musecl.fusion.FusionResult` (embeddings, attention, history, state).
    """

    def __init__(self, name: str, cfg: dict[str, Any], rs: str = "rs", sv: str = "sv", text: str = "poi_text") -> None:
        super().__init__(name)
        self.cfg = dict(cfg)
        self.inputs = {"rs": rs, "sv": sv, "text": text}
        self.result = None
        self.model = None

    def config(self, city: City):
        from musecl.fusion import FusionConfig

        return FusionConfig.from_params(self.cfg, city.seed)

    def fit(self, city: City, on_epoch: Callable[[int, float], None] | None = None) -> "FusedRegions":
        from musecl.fusion import fuse_regions

        config = self.config(city)
        needs_text = config.loss != "none" or config.output != "image"
        rs, sv = city.embeddings(self.inputs["rs"]), city.embeddings(self.inputs["sv"])
        text = city.embeddings(self.inputs["text"]) if needs_text else None
        self.result = fuse_regions(rs, sv, text, config, on_epoch=on_epoch, progress=city.progress)
        return self

    def transform(self, city: City) -> pd.DataFrame:
        if self.result is None:
            raise RuntimeError(f"{self!r}: call fit() before transform()")
        return self.result.embeddings

    @property
    def attention(self) -> pd.DataFrame:
        return self.result.attention

    def save(self, folder: str | Path) -> Path:
        from musecl.fusion import save_fusion_model

        return save_fusion_model(self.result, Path(folder) / "fusion.pt")

    @classmethod
    def load(cls, folder: str | Path, name: str = "musecl", **kwargs: Any) -> "FusedRegions":
        from dataclasses import asdict

        from musecl.fusion import load_fusion_model

        model, config = load_fusion_model(Path(folder) / "fusion.pt")
        method = cls(name, asdict(config), **kwargs)
        method.model = model
        return method
