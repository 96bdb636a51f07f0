"""POI text: a language-neutral tokenizer, Word2Vec (gensim) training and region text embeddings (MuseCL eq. 7).

Tokenizer rules (`tokenize`), the same for every language and with nothing to download:

1. Unicode NFKC normalisation (full-width forms, ligatures and compatibility characters become their plain forms:
   "ＡＢＣ" -> "ABC", "ﬁ" -> "fi"), then Unicode case folding ("Straße" -> "strasse", "ÉCOLE" -> "école").
2. A token is a maximal run of letters, combining marks and digits (Unicode categories L*, M*, N*), so accented and
   Indic words stay whole ("naïve", "हिन्दी"). An apostrophe (' or ’) between two such runs stays inside the token
   ("don't", "l'eau").
3. Everything else separates tokens: whitespace, punctuation, symbols, the underscore and the hyphen
   ("coffee-shop" -> "coffee", "shop"; "5★" -> "5").
4. Han ideographs (Chinese characters, also kanji) are written without spaces; without a dictionary (jieba etc.) they
   cannot be segmented into words, so with `split_han=True` (default) every Han character is its own token. Text that
   was segmented beforehand (words separated by spaces) keeps its words with `split_han=False`. Scripts such as Thai
   that do not separate words come out as one token per unspaced run.

Category strings ("level1;level2", `category_tokens`) are not word-tokenized: as in the authors' `POI_rep.py`, every
';'-separated level is ONE token (normalised by rules 1 and casefolding, surrounding whitespace stripped, inner
whitespace runs replaced by '_': "Food;Fast Food" -> ["food", "fast_food"]).

Word2Vec follows the paper: skip-gram (`sg=1`) with hierarchical softmax (`hs=1`, `negative=0`), 128 dimensions.
`deterministic=True` trains with one worker thread and the given seed (gensim's initial vectors come from that seed;
the hash function gensim keeps for seeding is set to a stable CRC-32 instead of Python's salted `hash`, so results do
not depend on `PYTHONHASHSEED` either); `deterministic=False` uses all cores, which is faster but thread scheduling
makes the vectors differ from run to run.
"""
from __future__ import annotations

import functools
import json
import os
import re
import sys
import time
import unicodedata
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import numpy as np
import pandas as pd

from musecl.data.schema import REGION_ID

if TYPE_CHECKING:
    import matplotlib.figure
    from gensim.models import KeyedVectors, Word2Vec

SENTENCE_MODES = ("poi", "fields", "category")
REGION_TOKEN_SOURCES = ("category", "all")
TOKEN_FIELDS = ("category_tokens", "name_tokens", "text_tokens")
MODEL_FILE = "word2vec.model"
STATS_FILE = "training.json"

# Han ideographs: CJK Unified Ideographs, Extension A, Compatibility Ideographs, Extensions B-H (supplementary planes).
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ebef\U00030000-\U000323af"
_HAN_CHAR = re.compile(f"([{_HAN}])")
_WHITESPACE = re.compile(r"\s+")


@functools.cache
def _token_pattern() -> re.Pattern[str]:
    """Letters/digits (`[^\\W_]`) plus combining marks, which Python's `\\w` lacks (it would cut "हिन्दी" apart)."""
    marks = [c for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c))[0] == "M"]
    ranges: list[str] = []
    start = prev = marks[0]
    for c in marks[1:] + [-1]:
        if c != prev + 1:
            ranges.append(re.escape(chr(start)) + ("" if start == prev else "-" + re.escape(chr(prev))))
            start = c
        prev = c
    unit = rf"(?:[^\W_]|[{''.join(ranges)}])+"
    return re.compile(rf"{unit}(?:['\u2019]{unit})*")


def normalise(text: str) -> str:
    """Rule 1: NFKC normalisation and Unicode case folding."""
    return unicodedata.normalize("NFKC", text).casefold()


def tokenize(text: str | None, split_han: bool = True) -> list[str]:
    """Word tokens of a free text (name, tags, reviews) by the module's rules; None/NaN gives []."""
    if text is None or (isinstance(text, float) and np.isnan(text)):
        return []
    text = normalise(str(text))
    if split_han:
        text = _HAN_CHAR.sub(r" \1 ", text)
    return _token_pattern().findall(text)


def category_tokens(category: str | None) -> list[str]:
    """The ';'-separated levels of a category string as tokens, one token per level ("food;fast food" -> 2 tokens)."""
    if category is None or (isinstance(category, float) and np.isnan(category)):
        return []
    levels = (_WHITESPACE.sub("_", normalise(level).strip()) for level in str(category).split(";"))
    return [level for level in levels if level]


def _tokenize_series(values: pd.Series, split_han: bool) -> pd.Series:
    """Vectorised over a column: normalise with the string accessor, then one regex findall per string."""
    text = values.astype(object).where(values.notna(), "").astype(str).str.normalize("NFKC").str.casefold()
    if split_han:
        text = text.str.replace(_HAN_CHAR, r" \1 ", regex=True)
    return text.str.findall(_token_pattern()).astype(object)


def tokenize_pois(pois: pd.DataFrame, split_han: bool = True, source: str = "pois.parquet") -> pd.DataFrame:
    """Tokens of every POI: columns `category_tokens`, `name_tokens`, `text_tokens` (lists), index of `pois`.

    `pois` needs `category` and `name`; `text` is optional (no column = no text tokens). `source` names the file in
    errors.
    """
    missing = [c for c in ("category", "name") if c not in pois.columns]
    if missing:
        raise ValueError(f"{source}: missing column(s) {missing}; POIs need 'category' ('level1;level2') and 'name'")
    out = pd.DataFrame(index=pois.index)
    out["category_tokens"] = pd.Series(
        [category_tokens(c) for c in pois["category"].astype(object)], index=pois.index, dtype=object
    )
    out["name_tokens"] = _tokenize_series(pois["name"], split_han)
    if "text" in pois.columns:
        out["text_tokens"] = _tokenize_series(pois["text"], split_han)
    else:
        out["text_tokens"] = pd.Series([[] for _ in range(len(pois))], index=pois.index, dtype=object)
    return out


def build_sentences(tokens: pd.DataFrame, mode: str = "poi") -> list[list[str]]:
    """The Word2Vec corpus from `tokenize_pois` output; empty sentences are dropped.

    mode `poi`: one sentence per POI, category + name + text tokens in that order (so a category token has the POI's
    words in its context window); `fields`: one sentence per non-empty field of each POI (category, name and text
    are separate contexts); `category`: the category tokens of each POI only (a corpus of tags, like the authors'
    region tokens).
    """
    if mode not in SENTENCE_MODES:
        raise ValueError(f"poi_text.sentences is {mode!r}; expected one of {SENTENCE_MODES}")
    missing = [c for c in TOKEN_FIELDS if c not in tokens.columns]
    if missing:
        raise ValueError(f"token table lacks column(s) {missing} (build it with tokenize_pois)")
    if mode == "poi":
        joined = tokens["category_tokens"] + tokens["name_tokens"] + tokens["text_tokens"]
        sentences = joined.tolist()
    elif mode == "fields":
        sentences = tokens[list(TOKEN_FIELDS)].to_numpy().ravel().tolist()
    else:
        sentences = tokens["category_tokens"].tolist()
    return [s for s in sentences if s]


def corpus_summary(sentences: list[list[str]]) -> pd.DataFrame:
    """Sentences, tokens and distinct tokens of a corpus, as a one-row table."""
    lengths = np.fromiter((len(s) for s in sentences), dtype=np.int64, count=len(sentences))
    vocab = pd.Index(pd.Series([t for s in sentences for t in s], dtype=object)).unique()
    return pd.DataFrame(
        {
            "sentences": [len(sentences)],
            "tokens": [int(lengths.sum())],
            "distinct_tokens": [len(vocab)],
            "mean_sentence_length": [float(lengths.mean()) if len(lengths) else 0.0],
        }
    )


# ---- Word2Vec -----------------------------------------------------------------------------------------------------
def stable_hash(text: str) -> int:
    """CRC-32 of the UTF-8 text: a hash that, unlike Python's `hash`, does not change with PYTHONHASHSEED."""
    return zlib.crc32(text.encode("utf-8"))


@dataclass(frozen=True)
class Word2VecConfig:
    """Word2Vec hyper-parameters (params.yaml `poi_text.word2vec`) and the corpus definition."""

    vector_size: int = 128
    window: int = 5
    min_count: int = 1
    epochs: int = 5
    sg: int = 1  # skip-gram (paper)
    hs: int = 1  # hierarchical (Huffman) softmax (paper)
    negative: int = 0
    alpha: float = 0.025
    sample: float = 1e-3
    sentences: str = "poi"
    deterministic: bool = True
    workers: int | None = None  # fast mode only; None = all cores

    def __post_init__(self) -> None:
        if self.sentences not in SENTENCE_MODES:
            raise ValueError(f"poi_text.word2vec.sentences is {self.sentences!r}; expected one of {SENTENCE_MODES}")
        for name in ("vector_size", "window", "min_count", "epochs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"poi_text.word2vec.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.hs == 0 and self.negative == 0:
            raise ValueError("poi_text.word2vec: hs=0 and negative=0 leave Word2Vec without an output layer")

    @classmethod
    def from_params(cls, section: Mapping[str, Any]) -> "Word2VecConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(section) - known)
        if unknown:
            raise ValueError(f"params poi_text.word2vec: unknown key(s) {unknown} (known: {sorted(known)})")
        return cls(**dict(section))

    @property
    def n_workers(self) -> int:
        return 1 if self.deterministic else int(self.workers or os.cpu_count() or 1)

    def other_mode(self) -> "Word2VecConfig":
        """The same settings in the other mode (deterministic <-> fast), for timing the two against each other."""
        return replace(self, deterministic=not self.deterministic)


@dataclass
class Word2VecRun:
    """A trained model with how it was trained and how fast."""

    model: "Word2Vec"
    config: Word2VecConfig
    seed: int
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def wv(self) -> "KeyedVectors":
        return self.model.wv


def train_word2vec(sentences: list[list[str]], config: Word2VecConfig, seed: int) -> Word2VecRun:
    """Train gensim Word2Vec on `sentences`; stats hold vocabulary size, seconds and words/second.

    Words/second counts the raw corpus tokens processed over all epochs (before min_count and down-sampling), divided
    by the wall time of `train` (vocabulary building excluded).
    """
    from gensim.models import Word2Vec

    if not sentences:
        raise ValueError("the Word2Vec corpus is empty: no POI has any category, name or text token")
    model = Word2Vec(
        vector_size=config.vector_size,
        window=config.window,
        min_count=config.min_count,
        sg=config.sg,
        hs=config.hs,
        negative=config.negative,
        alpha=config.alpha,
        sample=config.sample,
        seed=int(seed) % 2**32,
        workers=config.n_workers,
        hashfxn=stable_hash,
    )
    start = time.perf_counter()
    model.build_vocab(sentences)
    vocab_seconds = time.perf_counter() - start
    if len(model.wv) == 0:
        raise ValueError(f"no token occurs min_count={config.min_count} times; lower poi_text.word2vec.min_count")
    start = time.perf_counter()
    effective, raw = model.train(sentences, total_examples=model.corpus_count, epochs=config.epochs)
    seconds = time.perf_counter() - start
    stats = {
        "mode": "deterministic" if config.deterministic else "fast",
        "workers": config.n_workers,
        "seed": int(seed),
        "sentences": model.corpus_count,
        "corpus_tokens": int(model.corpus_total_words),
        "vocabulary": len(model.wv),
        "epochs": config.epochs,
        "raw_words_trained": int(raw),
        "effective_words_trained": int(effective),
        "vocab_seconds": vocab_seconds,
        "train_seconds": seconds,
        "words_per_second": raw / seconds if seconds > 0 else float("inf"),
        "pythonhashseed": os.environ.get("PYTHONHASHSEED"),
    }
    return Word2VecRun(model, config, int(seed), stats)


def throughput_table(runs: Iterable[Word2VecRun | None]) -> pd.DataFrame:
    """Training speed of one or more runs (None entries skipped): one row per mode."""
    keys = ("workers", "vocabulary", "epochs", "raw_words_trained", "train_seconds", "words_per_second")
    rows = {run.stats["mode"]: {k: run.stats[k] for k in keys} for run in runs if run is not None}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("mode")


def save_word2vec(run: Word2VecRun, folder: str | Path) -> Path:
    """Save the model (gensim format, `word2vec.model`) and its config and stats (`training.json`) atomically."""
    from musecl.storage import atomic_dir

    folder = Path(folder)
    with atomic_dir(folder) as tmp:
        run.model.save(str(tmp / MODEL_FILE))
        payload = {"config": asdict(run.config), "seed": run.seed, "stats": run.stats}
        (tmp / STATS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    return folder / MODEL_FILE


def load_word2vec(folder: str | Path) -> "Word2Vec":
    """Load a model saved by `save_word2vec`."""
    from gensim.models import Word2Vec

    path = Path(folder) / MODEL_FILE
    if not path.is_file():
        raise FileNotFoundError(f"Word2Vec model {path} not found (run stage poi_text: `dvc repro poi_text`)")
    return Word2Vec.load(str(path))


def nearest_words(wv: "KeyedVectors", words: Iterable[str], topn: int = 5) -> pd.DataFrame:
    """The `topn` nearest vocabulary words (cosine) of each word: one row per word, cells "neighbour (0.83)"."""
    rows = {}
    for word in words:
        if word not in wv.key_to_index:
            raise KeyError(f"'{word}' is not in the Word2Vec vocabulary ({len(wv)} words)")
        rows[word] = [f"{w} ({s:.2f})" for w, s in wv.most_similar(word, topn=topn)]
    table = pd.DataFrame.from_dict(rows, orient="index", columns=[f"#{i + 1}" for i in range(topn)])
    return table.rename_axis("word")


def top_categories(tokens: pd.DataFrame, n: int = 6, level: int = 0) -> list[str]:
    """The `n` most frequent category tokens at `level` (0 = first level), most frequent first (ties: alphabetical)."""
    levels = tokens["category_tokens"].str[level].dropna()
    counts = levels.value_counts()
    counts = counts.rename_axis("token").reset_index().sort_values(["count", "token"], ascending=[False, True])
    return counts["token"].head(n).tolist()


# ---- region text embeddings (eq. 7) --------------------------------------------------------------------------------
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


def select_indicator(indicators: pd.DataFrame, name: str) -> pd.Series:
    """The indicator column that colours a figure, with an error naming the parameter and the choices."""
    if name not in indicators.columns:
        raise KeyError(f"poi_text.figures.color_by: {name!r} is not an indicator of this city "
                       f"(available: {list(indicators.columns)})")
    return indicators[name]


# ---- figures -------------------------------------------------------------------------------------------------------
def project_embeddings(table: pd.DataFrame, method: str = "pca", seed: int = 0) -> pd.DataFrame:
    """2-D coordinates (`x`, `y`) of an embedding table by PCA or t-SNE (sklearn), same index."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    values = table.to_numpy(dtype=np.float64)
    if method == "pca":
        coords = PCA(n_components=2, random_state=seed % 2**32).fit_transform(values)
    elif method == "tsne":
        perplexity = float(min(30.0, max(2.0, (len(values) - 1) / 3)))
        coords = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed % 2**32).fit_transform(
            values
        )
    else:
        raise ValueError(f"poi_text.figures.projection is {method!r}; expected 'pca' or 'tsne'")
    return pd.DataFrame(coords, index=table.index, columns=["x", "y"])


def plot_projection(
    coords: pd.DataFrame, values: pd.Series, title: str = "", empty: pd.Series | None = None
) -> "matplotlib.figure.Figure":
    """Scatter of 2-D coordinates coloured by `values` (aligned on the index); `empty` regions drawn as crosses."""
    import matplotlib.pyplot as plt

    frame = coords.join(values.rename("value"), how="inner")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    mask = np.zeros(len(frame), dtype=bool) if empty is None else empty.reindex(frame.index).fillna(False).to_numpy()
    points = ax.scatter(frame["x"][~mask], frame["y"][~mask], c=frame["value"][~mask], cmap="viridis", s=18)
    if mask.any():
        ax.scatter(frame["x"][mask], frame["y"][mask], marker="x", color="grey", s=18,
                   label=f"no in-vocabulary token ({int(mask.sum())})")
        ax.legend(loc="best", fontsize=8)
    fig.colorbar(points, ax=ax, label=str(values.name))
    ax.set_xlabel("component 1")
    ax.set_ylabel("component 2")
    ax.set_title(title)
    fig.tight_layout()
    return fig
