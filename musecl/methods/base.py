"""The one shape every representation method has: a :class:`RegionEmbedder` that is fitted on a :class:`City` and
turns it into a region embedding table, plus a registry from a method kind to its class.

A *city* here is what a method may read: the parameters, the city bundle, and the pipeline's work products (the
`encoders` stage's image caches, the `pairs` stage's triplets, other methods' embedding tables). Embedding tables can
also be handed over in memory (`City.tables`), which is how the sensitivity runs chain encoders into the fusion without
writing intermediate files.

Every method follows srai's embedder shape:

    method.fit(city)              # learn (train an encoder, Word2Vec, the fusion attention); a no-op for fixed features
    method.transform(city)        # -> DataFrame indexed by region_id with float32 columns e000, e001, ...
    method.fit_transform(city)
    method.save(folder) / Kind.load(folder)

and is registered under a kind with :func:`register_method`, so that a params entry can name it.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID

METHODS: dict[str, type["RegionEmbedder"]] = {}


def register_method(kind: str) -> Callable[[type["RegionEmbedder"]], type["RegionEmbedder"]]:
    """Class decorator: register a RegionEmbedder subclass under `kind` (its `kind` attribute is set to it)."""

    def wrap(cls: type[RegionEmbedder]) -> type[RegionEmbedder]:
        if kind in METHODS and METHODS[kind] is not cls:
            raise ValueError(f"method kind {kind!r} is registered twice ({METHODS[kind].__name__}, {cls.__name__})")
        cls.kind = kind
        METHODS[kind] = cls
        return cls

    return wrap


def method_class(kind: str) -> type["RegionEmbedder"]:
    """The class registered under `kind`; the error lists the registered kinds."""
    if kind not in METHODS:
        raise KeyError(f"unknown representation method {kind!r}; registered: {sorted(METHODS)}")
    return METHODS[kind]


@dataclass
class City:
    """What a method reads: params (with absolute `paths`), the city bundle and the pipeline's work products.

    `caches` and `tables` hold image caches and embedding tables already in memory (e.g. just built or trained); a
    method asks through :meth:`image_cache` and :meth:`embeddings`, which fall back to the files under `paths.work`.
    """

    params: dict[str, Any]
    bundle: Any  # musecl.data.CityBundle
    progress: bool = True
    caches: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def work(self) -> Path:
        return Path(self.params["paths"]["work"])

    @property
    def models(self) -> Path:
        return Path(self.params["paths"]["models"])

    @property
    def reports(self) -> Path:
        return Path(self.params["paths"]["reports"])

    @property
    def seed(self) -> int:
        """The training seed (:func:`musecl.config.training_seed`): `encoders.seed`, else the global seed."""
        from musecl.config import training_seed

        return training_seed(self.params)

    def region_ids(self) -> np.ndarray:
        """Every region of the bundle, as strings, in the bundle's order."""
        return self.bundle.regions()[REGION_ID].astype(str).to_numpy(dtype=object)

    def image_cache(self, modality: str):
        """The `encoders` stage's decoded image cache of `modality` (every image method trains on exactly these)."""
        if modality not in self.caches:
            from musecl.encoders.image_cache import ImageCache

            try:
                self.caches[modality] = ImageCache.open(self.work / "image_cache" / modality)
            except FileNotFoundError as err:
                raise FileNotFoundError(f"{err}; run the `encoders@{modality}` stage first "
                                        f"(dvc repro encoders@{modality})") from None
        return self.caches[modality]

    def triplets(self, modality: str, split: str) -> pd.DataFrame:
        """The `pairs` stage's triplets of `modality` (`train` or `val`)."""
        from musecl.pairs import read_triplets

        return read_triplets(self.work / "pairs", modality, split)

    def embeddings_path(self, name: str) -> Path:
        from musecl.config import embeddings_dir

        return embeddings_dir(self.params) / f"{name}.parquet"

    def embeddings(self, name: str) -> pd.DataFrame:
        """Embedding table `name`: the in-memory one when given, else `<paths.work>/embeddings/<name>.parquet`."""
        if name not in self.tables:
            from musecl.embeddings import read_embeddings

            self.tables[name] = read_embeddings(self.embeddings_path(name))
        return self.tables[name]


class RegionEmbedder(ABC):
    """A representation method: fit on a city, transform it into one embedding per region (see the module docstring).

    Subclasses set what they learnt as attributes during :meth:`fit` (e.g. `model`, `result`) so that a notebook can
    show it; :meth:`transform` must not change them.
    """

    kind: ClassVar[str] = ""

    def __init__(self, name: str) -> None:
        self.name = name

    @abstractmethod
    def fit(self, city: City) -> "RegionEmbedder":
        """Learn the method's parameters from `city`; returns self."""

    @abstractmethod
    def transform(self, city: City) -> pd.DataFrame:
        """One embedding per region of `city` (index `region_id`, float32 columns e000, e001, ...)."""

    def fit_transform(self, city: City) -> pd.DataFrame:
        return self.fit(city).transform(city)

    @abstractmethod
    def save(self, folder: str | Path) -> Path:
        """Write what :meth:`load` needs under `folder` (atomically); returns the main file."""

    @classmethod
    @abstractmethod
    def load(cls, folder: str | Path, **kwargs: Any) -> "RegionEmbedder":
        """A fitted method from what :meth:`save` wrote."""

    def write(self, table: pd.DataFrame, city: City) -> Path:
        """Write `table` as the embedding table `<paths.work>/embeddings/<name>.parquet` (where the evaluation reads;
        `paths.embeddings` when set)."""
        from musecl.embeddings import write_embeddings

        path = city.embeddings_path(self.name)
        write_embeddings(table, path)
        return path

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"
