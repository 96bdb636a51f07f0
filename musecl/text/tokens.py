"""The language-neutral tokenizer (rules in the docstring of :mod:`musecl.text`) and the Word2Vec corpus built from
the tokens of a city's POIs."""
from __future__ import annotations

import functools
import re
import sys
import unicodedata

import numpy as np
import pandas as pd

SENTENCE_MODES = ("poi", "fields", "category")
REGION_TOKEN_SOURCES = ("category", "all")
TOKEN_FIELDS = ("category_tokens", "name_tokens", "text_tokens")

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
