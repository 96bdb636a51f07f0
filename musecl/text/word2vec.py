"""Word2Vec (gensim) on the POI corpus: settings (params.yaml `poi_text.word2vec`), training with its throughput,
saving and loading, and the nearest words of a category (what the notebook shows).

Saved models are byte-identical for the same seed and corpus in deterministic mode: gensim's lifecycle log (which
records the date, the platform and the file name) is switched off, its training-time counter is saved as 0, and
`training.json` holds the settings and counts but not the timings (those go to the stage's metrics file,
reports/poi_text.json).
"""
from __future__ import annotations

import json
import os
import time
import zlib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import pandas as pd

from musecl.text.tokens import SENTENCE_MODES

if TYPE_CHECKING:
    from gensim.models import KeyedVectors, Word2Vec

MODEL_FILE = "word2vec.model"
STATS_FILE = "training.json"
TIMING_KEYS = ("vocab_seconds", "train_seconds", "words_per_second")  # vary run to run: kept out of saved files


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
    """Save the model (gensim format, `word2vec.model`) and its config and counts (`training.json`, without the
    timings) atomically; the same seed and corpus give the same bytes in deterministic mode."""
    from musecl.storage import atomic_dir

    folder = Path(folder)
    run.model.lifecycle_events = None  # gensim's log of dates, platform and file names: not part of the model
    run.model.wv.lifecycle_events = None
    seconds, run.model.total_train_time = run.model.total_train_time, 0.0  # a wall-clock counter, saved as 0
    try:
        with atomic_dir(folder) as tmp:
            run.model.save(str(tmp / MODEL_FILE))
            stats = {k: v for k, v in run.stats.items() if k not in TIMING_KEYS}
            payload = {"config": asdict(run.config), "seed": run.seed, "stats": stats}
            (tmp / STATS_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True, default=float) + "\n")
    finally:
        run.model.total_train_time = seconds
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
