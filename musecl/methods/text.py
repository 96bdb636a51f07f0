"""The POI text method: Word2Vec on the city's POI tokens, region vector = mean of the region's unique in-vocabulary
tokens (MuseCL eq. 7; :func:`musecl.text.fit_poi_text`)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from musecl.methods.base import City, RegionEmbedder, register_method


@register_method("word2vec_poi_text")
class PoiText(RegionEmbedder):
    """`cfg`: params.yaml's `poi_text` section; `vector_size` overrides its Word2Vec dimension (sensitivity runs).

    After `fit`, `self.fitted` (a :class:`musecl.text.PoiTextFit`) holds every step for the notebook to show.
    """

    def __init__(self, cfg: dict[str, Any], name: str = "poi_text", vector_size: int | None = None) -> None:
        super().__init__(name)
        self.cfg = dict(cfg)
        self.vector_size = vector_size
        self.fitted = None
        self.model = None  # gensim Word2Vec after fit / load

    @classmethod
    def from_params(cls, params: dict[str, Any], **kwargs: Any) -> "PoiText":
        return cls(params["poi_text"], **kwargs)

    def fit(self, city: City) -> "PoiText":
        from musecl.text import fit_poi_text

        self.fitted = fit_poi_text(city.bundle, self.cfg, city.seed, self.vector_size)
        self.model = self.fitted.run.model
        return self

    def transform(self, city: City) -> pd.DataFrame:
        """The region vectors of the fitted city (eq. 7 needs the city's own POI tokens, so this is the fitted city)."""
        if self.fitted is None:
            raise RuntimeError(f"{self!r}: call fit() before transform()")
        return self.fitted.table

    def save(self, folder: str | Path) -> Path:
        from musecl.text import save_word2vec

        if self.fitted is None:
            raise RuntimeError(f"{self!r}: nothing to save; call fit() first")
        return save_word2vec(self.fitted.run, folder)

    @classmethod
    def load(cls, folder: str | Path, cfg: dict[str, Any] | None = None, **kwargs: Any) -> "PoiText":
        from musecl.text import load_word2vec

        method = cls(cfg or {}, **kwargs)
        method.model = load_word2vec(folder)
        return method
