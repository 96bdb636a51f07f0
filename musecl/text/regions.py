"""Region text vectors (MuseCL eq. 7) and the whole POI-text chain, POIs -> tokens -> Word2Vec -> region vectors,
that the `poi_text` stage (notebooks/04_poi_word2vec.ipynb) and the sensitivity runs share (:func:`fit_poi_text`)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd

from musecl.contract import REGION_ID
from musecl.text.tokens import REGION_TOKEN_SOURCES, build_sentences, tokenize_pois
from musecl.text.word2vec import Word2VecConfig, Word2VecRun, train_word2vec

if TYPE_CHECKING:
    from gensim.models import KeyedVectors


@dataclass
class RegionTextEmbeddings:
    """Eq. 7 per region, with the coverage behind every vector.

    `table`: embedding table (index region_id, columns e000..), zeros for regions without any in-vocabulary token.
    `coverage`: per region `pois`, `unique_tokens`, `in_vocabulary` (how many distinct tokens were averaged).
    """

    table: pd.DataFrame
    coverage: pd.DataFrame
    source: str

    @property
    def regions_without_pois(self) -> int:
        return int((self.coverage["pois"] == 0).sum())

    @property
    def regions_without_tokens(self) -> int:
        """Regions whose vector is the zero fill: no POI, or POIs but no in-vocabulary token."""
        return int((self.coverage["in_vocabulary"] == 0).sum())

    def summary(self) -> pd.DataFrame:
        cov = self.coverage
        return pd.DataFrame(
            {
                "regions": [len(cov)],
                "token_source": [self.source],
                "regions_without_pois": [self.regions_without_pois],
                "regions_zero_vector": [self.regions_without_tokens],
                "median_pois_per_region": [float(cov["pois"].median())],
                "median_tokens_averaged": [float(cov["in_vocabulary"].median())],
            }
        )


def assign_pois_to_regions(pois: pd.DataFrame, regions: pd.Index | np.ndarray, h3_resolution: int) -> np.ndarray:
    """Region id of every POI (None outside the city's regions), via the bundle's H3 assignment."""
    from musecl.data.regions import assign_points_to_regions

    return assign_points_to_regions(pois["lon"].to_numpy(), pois["lat"].to_numpy(), regions, h3_resolution)


def region_text_embeddings(
    tokens: pd.DataFrame,
    poi_regions: np.ndarray | pd.Series,
    wv: "KeyedVectors",
    region_ids: Iterable[str],
    source: str = "category",
) -> RegionTextEmbeddings:
    """Eq. 7 as the authors implemented it: the mean vector of a region's UNIQUE in-vocabulary tokens.

    `tokens` is `tokenize_pois` output, `poi_regions` the region of each of its rows (None = outside every region).
    `source`: `category` = the ';'-separated category levels only (the authors' `POI_rep.py`), `all` = category, name
    and text tokens. Every region of `region_ids` gets a row; a region with no POI, or with POIs whose tokens are all
    out of vocabulary, gets the zero vector (as in the authors' code) and is counted in `coverage`.
    Vectorised: one sparse region x vocabulary incidence matrix times the vector table.
    """
    from scipy import sparse

    if source not in REGION_TOKEN_SOURCES:
        raise ValueError(f"poi_text.region_tokens is {source!r}; expected one of {REGION_TOKEN_SOURCES}")
    poi_regions = np.asarray(poi_regions, dtype=object)
    if len(poi_regions) != len(tokens):
        raise ValueError(f"{len(poi_regions)} region ids for {len(tokens)} POIs")
    regions = pd.Index(np.asarray(list(region_ids), dtype=object), name=REGION_ID)
    if regions.has_duplicates:
        raise ValueError(f"duplicate region ids: {regions[regions.duplicated()][:5].tolist()}")
    per_poi = tokens["category_tokens"] if source == "category" else (
        tokens["category_tokens"] + tokens["name_tokens"] + tokens["text_tokens"]
    )
    pairs = pd.DataFrame({REGION_ID: poi_regions, "token": per_poi.to_numpy()})
    pairs = pairs[pd.notna(pairs[REGION_ID])]
    pois_per_region = pairs[REGION_ID].value_counts().reindex(regions, fill_value=0)
    pairs = pairs.explode("token").dropna(subset=["token"]).drop_duplicates()
    unique_per_region = pairs[REGION_ID].value_counts().reindex(regions, fill_value=0)
    row = regions.get_indexer(pairs[REGION_ID])
    col = pd.Index(wv.index_to_key).get_indexer(pairs["token"])
    keep = (row >= 0) & (col >= 0)
    incidence = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (row[keep], col[keep])), shape=(len(regions), len(wv.index_to_key))
    )
    counts = np.asarray(incidence.sum(axis=1)).ravel()
    sums = incidence @ wv.vectors.astype(np.float64)
    means = np.divide(sums, counts[:, None], out=np.zeros_like(sums), where=counts[:, None] > 0)
    from musecl.embeddings import to_frame

    coverage = pd.DataFrame(
        {"pois": pois_per_region.to_numpy(), "unique_tokens": unique_per_region.to_numpy(),
         "in_vocabulary": counts.astype(np.int64)},
        index=regions,
    )
    return RegionTextEmbeddings(to_frame(regions, means.astype(np.float32)), coverage, source)


@dataclass
class PoiTextFit:
    """Every step of the POI-text chain, for a notebook to show: the POIs' tokens, the Word2Vec corpus and run, the
    region of each POI and the region vectors (eq. 7)."""

    tokens: pd.DataFrame
    sentences: list[list[str]]
    run: Word2VecRun
    poi_regions: np.ndarray
    regions: RegionTextEmbeddings

    @property
    def table(self) -> pd.DataFrame:
        return self.regions.table


def fit_poi_text(bundle: Any, cfg: Mapping[str, Any], seed: int, vector_size: int | None = None) -> PoiTextFit:
    """POIs -> tokens -> Word2Vec -> region vectors (eq. 7), with params.yaml's `poi_text` section `cfg`.

    `vector_size` overrides `cfg.word2vec.vector_size` (the sensitivity runs vary the embedding size d).
    """
    pois = bundle.pois()
    tokens = tokenize_pois(pois, split_han=cfg["tokenizer"]["split_han"], source=str(bundle.path("pois.parquet")))
    settings = dict(cfg["word2vec"]) if vector_size is None else {**cfg["word2vec"], "vector_size": int(vector_size)}
    config = Word2VecConfig.from_params(settings)
    sentences = build_sentences(tokens, config.sentences)
    run = train_word2vec(sentences, config, seed=seed)
    regions = bundle.regions()[REGION_ID]
    poi_regions = assign_pois_to_regions(pois, regions, bundle.h3_resolution)
    table = region_text_embeddings(tokens, poi_regions, run.wv, regions, source=cfg["region_tokens"])
    return PoiTextFit(tokens, sentences, run, poi_regions, table)
