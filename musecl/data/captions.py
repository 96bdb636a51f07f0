"""Captions of a city's images as data: the caption vocabulary (a lexicon of urban scene objects and attributes),
the factual parser that turns a caption into facts, and how a caption is scored against the truth.

INTERFACE SKELETON (filled in by the captions work; the signatures are what other modules rely on).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Fact:
    """One visual claim, canonicalised: `kind` is "object", "attribute" or "relation"; `subject` a canonical object
    ("building", "road", "vehicle", ...); `value` empty for an object, the canonical attribute ("tall", "red_roof",
    "many", ...) or the relation ("along:road") otherwise."""

    kind: str
    subject: str
    value: str = ""


def phrases(caption: str) -> list[str]:
    """The caption split into phrases (sentences and clauses), in order; joining them with " " gives a caption."""
    raise NotImplementedError


def parse_caption(caption: str) -> frozenset[Fact]:
    """The facts a caption states (the factual parser: lexicon phrases and synonyms -> canonical facts)."""
    raise NotImplementedError


def fact_family(fact: Fact) -> str:
    """The group a fact's value belongs to (e.g. "height" for tall/low/mid-rise; "count" for few/several/many), used
    for CAPTURE's soft match: two facts of the same subject and family but different values match partially."""
    raise NotImplementedError


def truth_rates(claimed: frozenset[Fact], truth: frozenset[Fact]) -> tuple[float, float]:
    """(hallucination rate, omission rate) of a caption's facts against the image's true facts: the share of
    claimed facts that are false (a wrong attribute value counts as false), and the share of true facts not claimed.
    NaN where the denominator is empty."""
    raise NotImplementedError


def facts_to_text(facts: frozenset[Fact]) -> str:
    """A stable one-line encoding of a fact set (stored in scene_facts.parquet); `facts_from_text` inverts it."""
    raise NotImplementedError


def facts_from_text(text: str) -> frozenset[Fact]:
    raise NotImplementedError
